"""The deployment files hold together: docker-compose.yml is a valid Compose file whose services,
volumes and dependencies line up, every command names a real entry point of this project, and the
Dockerfile, nginx and gunicorn configurations agree with it. No Docker engine is needed."""

from __future__ import annotations

import json
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from compose_spec import PyCompose

ROOT = Path(__file__).resolve().parents[1]
APP_COMMANDS = {"gunicorn", "celery", "flask"}
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def env_example() -> dict[str, str]:
    pairs = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


def interpolate(value, env: dict[str, str]):
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}`` substitution."""
    if isinstance(value, str):
        def substitute(match: re.Match) -> str:
            name, operator, argument = match.groups()
            if env.get(name):
                return env[name]
            if operator in ("-", ":-"):
                return argument
            if operator in ("?", ":?"):
                raise AssertionError(f"${{{name}}} is required ({argument}), not in .env.example")
            return ""

        return _VARIABLE.sub(substitute, value).replace("$$", "$")
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    return value


@pytest.fixture(scope="module")
def raw_compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())  # resolves `<<` merges


@pytest.fixture(scope="module")
def compose(raw_compose) -> dict:
    return interpolate(raw_compose, env_example())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def service_env(service: dict) -> dict[str, str]:
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    return {k: str(v) for k, v in environment.items()}


def app_services(services: dict) -> dict:
    return {name: s for name, s in services.items()
            if isinstance(s.get("command"), list) and s["command"][0] in APP_COMMANDS}


def run_in_service_env(service: dict, code: str) -> subprocess.CompletedProcess:
    """Run Python in this checkout with the service's environment (hosts need not resolve)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEST_", "DATABASE_",
                                                                     "REDIS_", "CELERY_"))}
    env.update(service_env(service))
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # a container path (even "" turns the mode on)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


# --------------------------------------------------------------------------- the compose file


def test_compose_file_is_valid_against_the_compose_specification(compose):
    spec = {k: v for k, v in compose.items() if not k.startswith("x-")}
    parsed = PyCompose.from_json(json.dumps(spec))  # raises ValueError on any violation
    parsed.validate()
    assert set(parsed.service_names()) >= {"web", "worker", "postgres", "redis", "nginx",
                                           "migrate", "prometheus"}


def test_the_schema_check_rejects_what_compose_would_reject():
    for broken in (
        {"services": {"web": {"image": "x", "depends_on": {"db": {"condition": "sometimes"}}}}},
        {"services": {"web": {"image": "x", "restart_policy": "always"}}},
        {"services": {"web": {"image": "x", "healthcheck": {"interval": "often"}}}},
    ):
        with pytest.raises(ValueError):
            PyCompose.from_json(json.dumps(broken)).validate()


def test_every_service_has_an_image_or_a_build_of_an_existing_target(services):
    targets = set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", (ROOT / "Dockerfile").read_text(),
                             re.MULTILINE | re.IGNORECASE))
    for name, service in services.items():
        assert service.get("image") or service.get("build"), name
        build = service.get("build")
        if isinstance(build, dict):
            assert (ROOT / build.get("context", ".")).is_dir(), name
            assert build.get("target") in targets, f"{name}: target {build.get('target')}"


def test_dependencies_name_real_services_and_the_migration_runs_first(services):
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        for target in (depends if isinstance(depends, dict) else {d: {} for d in depends}):
            assert target in services, f"{name} depends on unknown service {target}"
            assert target != name
    for name in ("web", "worker"):
        assert services[name]["depends_on"]["migrate"]["condition"] == \
            "service_completed_successfully"
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["migrate"]["restart"] == "no"
    assert services["migrate"]["command"] == ["flask", "--app", "wsgi", "db", "upgrade"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_long_running_services_have_healthchecks_that_their_dependants_wait_for(services):
    for name in ("postgres", "redis", "web", "worker", "nginx"):
        assert services[name]["healthcheck"]["test"], name
    for name, service in services.items():
        for target, rule in (service.get("depends_on") or {}).items():
            if rule.get("condition") == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits on {target}"
    assert "/healthz" in " ".join(services["web"]["healthcheck"]["test"])


def test_named_volumes_are_declared_and_bind_mounts_exist(compose, services):
    declared = set(compose.get("volumes") or {})
    for name, service in services.items():
        for volume in service.get("volumes") or []:
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume["source"]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in declared, f"{name}: volume {source} is not declared"
    assert any(v.startswith("pgdata:") for v in services["postgres"]["volumes"])
    assert any(v.startswith("redisdata:/data") for v in services["redis"]["volumes"])


def test_redis_keeps_the_broker_queue_across_restarts(services):
    command = services["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--appendfsync") + 1] == "everysec"


def test_prometheus_is_optional_and_scrapes_the_web_service(services):
    prometheus = services["prometheus"]
    assert prometheus["profiles"], "Prometheus starts only when its profile is asked for"
    optional = {"prometheus", *SENTINEL_SERVICES}
    assert all(not s.get("profiles") for n, s in services.items() if n not in optional)
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    targets = [t for job in config["scrape_configs"]
               for sc in job.get("static_configs", []) for t in sc["targets"]]
    assert "web:8000" in targets


SENTINEL_SERVICES = ("redis-replica1", "redis-replica2", "sentinel1", "sentinel2", "sentinel3")


def test_the_sentinel_profile_adds_two_replicas_and_three_sentinels_of_redis(services):
    for name in SENTINEL_SERVICES:
        assert services[name]["profiles"] == ["sentinel"], name
        assert services[name]["healthcheck"]["test"], name
    for name in ("redis-replica1", "redis-replica2"):
        command = services[name]["command"]
        assert command[command.index("--replicaof") + 1:][:2] == ["redis", "6379"]
        assert command[command.index("--appendonly") + 1] == "yes"
    script = services["sentinel1"]["command"][-1]
    assert "sentinel monitor mymaster redis 6379 2" in script
    assert script.rstrip().endswith("exec redis-server /data/sentinel.conf --sentinel")
    # Off by default: the app asks no sentinel and waits for no replica unless .env says so.
    web = service_env(services["web"])
    assert web["REDIS_SENTINELS"] == "" and web["CHAT_ACK_REPLICAS"] == "0"
    assert web["REDIS_SENTINEL_MASTER"] == "mymaster"


def test_only_nginx_publishes_the_chat_to_the_host_and_web_can_scale(services):
    assert "ports" not in services["web"] and "container_name" not in services["web"]
    assert any(str(p).endswith(":80") for p in services["nginx"]["ports"])
    assert services["web"]["expose"] == ["8000"]


def test_secrets_come_from_the_env_file_and_the_example_holds_none(raw_compose):
    text = (ROOT / "docker-compose.yml").read_text()
    required = {m.group(1) for m in _VARIABLE.finditer(text) if m.group(2) in ("?", ":?")}
    assert {"SECRET_KEY", "POSTGRES_PASSWORD"} <= required
    example = env_example()
    for name in required:
        assert example[name] == "change-me", f"{name} in .env.example must be a placeholder"
    used = {m.group(1) for m in _VARIABLE.finditer(text)}
    assert set(example) <= used, f"unused in compose: {set(example) - used}"


# --------------------------------------------------------------------------- entry points


def test_web_command_loads_the_gunicorn_config_and_imports_wsgi_app(services):
    web = services["web"]
    command = web["command"]
    assert command[:3] == ["gunicorn", "-c", "gunicorn.conf.py"] and command[-1] == "wsgi:app"
    result = run_in_service_env(web, (
        "from gunicorn.config import Config\n"
        "from gunicorn.util import import_app\n"
        "import runpy\n"
        "cfg = Config()\n"
        "for key, value in runpy.run_path('gunicorn.conf.py').items():\n"
        "    if key in cfg.settings:\n"
        "        cfg.set(key, value)\n"
        "assert cfg.worker_class_str == 'eventlet', cfg.worker_class_str\n"
        "assert cfg.address == [('0.0.0.0', 8000)], cfg.address\n"
        "assert cfg.workers == 2 and cfg.forwarded_allow_ips == ['*']\n"
        "app = import_app('wsgi:app')\n"
        "assert '/healthz' in {r.rule for r in app.url_map.iter_rules()}\n"
        "assert app.config['SESSION_COOKIE_SECURE'] is True and not app.testing\n"
    ))
    assert result.returncode == 0, result.stderr[-3000:]


def test_worker_command_names_the_celery_app_and_its_queue(services):
    worker = services["worker"]
    command = worker["command"]
    assert command[:4] == ["celery", "-A", "celery_worker.celery", "worker"]
    queue = command[command.index("-Q") + 1]
    result = run_in_service_env(worker, (
        "import celery_worker\n"
        "from celery import Celery\n"
        "assert isinstance(celery_worker.celery, Celery)\n"
        "conf = celery_worker.celery.conf\n"
        "assert not conf.task_always_eager\n"
        f"assert conf.task_default_queue == {queue!r}, conf.task_default_queue\n"
        "celery_worker.celery.loader.import_default_modules()  # as the worker does\n"
        "assert 'simplechat.store_message' in celery_worker.celery.tasks\n"
    ))
    assert result.returncode == 0, result.stderr[-3000:]


def test_one_beat_schedules_the_digest_sweep_for_the_workers(services):
    beat = services["beat"]
    command = beat["command"]
    assert command[:4] == ["celery", "-A", "celery_worker.celery", "beat"]
    assert "deploy" not in beat  # one beat: a replica more would queue every task twice
    result = run_in_service_env(beat, (
        "import celery_worker\n"
        "conf = celery_worker.celery.conf\n"
        "assert not conf.task_always_eager\n"
        "entry = conf.beat_schedule['simplechat.sweep_digests']\n"
        "assert entry == {'task': 'simplechat.sweep_digests', 'schedule': 60.0}, entry\n"
        "assert 'simplechat.send_digest' in celery_worker.celery.tasks\n"
    ))
    assert result.returncode == 0, result.stderr[-3000:]


def test_migrate_command_resolves_to_the_flask_migrate_upgrade(services):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEST_", "DATABASE_"))}
    env.update(service_env(services["migrate"]))
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    result = subprocess.run([str(Path(sys.executable).parent / "flask"), "--app", "wsgi", "db",
                             "upgrade", "--help"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Upgrade to a later version" in result.stdout


def test_gunicorn_config_reads_bind_workers_and_class_from_the_environment(monkeypatch):
    monkeypatch.setenv("BIND", "127.0.0.1:9999")
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    monkeypatch.setenv("GUNICORN_WORKER_CLASS", "gevent")
    settings = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    assert settings["bind"] == ["127.0.0.1:9999"]
    assert settings["workers"] == 3 and settings["worker_class"] == "gevent"
    assert settings["graceful_timeout"] > 0 and settings["timeout"] >= 30
    assert settings["accesslog"] == "-"
    monkeypatch.delenv("BIND")
    monkeypatch.setenv("PORT", "8123")
    assert runpy.run_path(str(ROOT / "gunicorn.conf.py"))["bind"] == ["0.0.0.0:8123"]


# --------------------------------------------------------------------------- images and nginx


def dockerfile_stage(name: str) -> str:
    text = (ROOT / "Dockerfile").read_text()
    stages = re.split(r"^FROM\s", text, flags=re.MULTILINE)
    return next("FROM " + s for s in stages if re.match(rf"\S+\s+AS\s+{name}\b", s, re.I))


def test_app_image_is_slim_non_root_and_installs_dependencies_before_the_code():
    stage = dockerfile_stage("app")
    assert stage.startswith("FROM python:3.11-slim ")
    lines = [line.strip() for line in stage.splitlines()]
    install = next(i for i, line in enumerate(lines) if line.startswith("RUN pip install -r"))
    copy_requirements = lines.index("COPY requirements.txt .")
    first_code = next(i for i, line in enumerate(lines)
                      if line.startswith("COPY") and "requirements" not in line)
    assert copy_requirements < install < first_code
    user = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert user and user[-1] not in ("root", "0")
    assert "EXPOSE 8000" in lines
    assert 'CMD ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]' in lines


def test_every_file_the_images_copy_exists_and_is_in_the_build_context():
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith(("#", "!"))]
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY") and "--from" not in line:
            for source in line.split()[1:-1]:
                if source.startswith("--"):
                    continue
                assert (ROOT / source).exists(), source
                top = source.split("/")[0]
                assert top not in ignored and source not in ignored, f"{source} is ignored"
    assert ".venv" in ignored and ".env" in ignored and ".git" in ignored


def test_nginx_proxies_websockets_and_static_files_to_the_web_service(services):
    conf = (ROOT / "deploy/nginx/nginx.conf").read_text()
    upstream = re.search(r"upstream\s+(\w+)\s*\{(.*?)\}", conf, re.S)
    host, port = re.search(r"server\s+([\w.-]+):(\d+)", upstream.group(2)).groups()
    assert host in services and port in services[host]["expose"]
    socket_io = re.search(r"location /socket\.io/ \{(.*?)\n        \}", conf, re.S).group(1)
    assert f"proxy_pass http://{upstream.group(1)};" in socket_io
    assert "proxy_http_version 1.1;" in socket_io
    assert "proxy_set_header Upgrade $http_upgrade;" in socket_io
    assert "proxy_set_header Connection $connection_upgrade;" in socket_io
    assert "proxy_set_header Host $http_host;" in socket_io  # Origin check sees host:port
    # Static files carry content-hashed names only the web processes know (static_files.py).
    static = re.search(r"location /static/ \{(.*?)\n        \}", conf, re.S).group(1)
    assert f"proxy_pass http://{upstream.group(1)};" in static and "alias" not in static
    stage = dockerfile_stage("nginx")
    assert "simplechat/static" not in stage
    app_stage = dockerfile_stage("app")
    assert "RUN python -m simplechat.web.static_files /app/static-build" in app_stage
    assert "ENV STATIC_BUILD_DIR=/app/static-build" in app_stage
    assert "COPY deploy/nginx/nginx.conf /etc/nginx/nginx.conf" in stage
    if re.search(r"server\s+\S+\s+.*\bresolve\b", upstream.group(2)):
        # `resolve` in an upstream is in open-source nginx from 1.27.3 on.
        version = re.match(r"FROM nginx:(\d+)\.(\d+)", stage).groups()
        assert tuple(map(int, version)) >= (1, 28)
    assert re.search(r"location = /metrics \{\s*return 404;", conf)


def nginx_location(conf: str, head: str) -> str:
    """The body of the server block's ``location <head> {...}``."""
    return re.search(rf"location {re.escape(head)} \{{(.*?)\n        \}}", conf, re.S).group(1)


def test_nginx_limits_connections_and_requests_per_address_for_sockets_and_the_app():
    from config import Config

    conf = (ROOT / "deploy/nginx/nginx.conf").read_text()
    conn_zones = set(re.findall(r"^\s*limit_conn_zone \$binary_remote_addr zone=(\w+):\d+m;",
                                conf, re.M))
    req_zones = dict(re.findall(
        r"^\s*limit_req_zone \$binary_remote_addr zone=(\w+):\d+m rate=(\d+)r/s;", conf, re.M))
    assert "limit_conn_status 429;" in conf and "limit_req_status 429;" in conf
    limits = {}
    for head in ("/socket.io/", "/", "/static/", "~ ^/api/conversations/[0-9]+/attachments$"):
        block = nginx_location(conf, head)
        [(conn_zone, most)] = re.findall(r"^\s*limit_conn (\w+) (\d+);", block, re.M)
        [(req_zone, burst)] = re.findall(r"^\s*limit_req zone=(\w+) burst=(\d+) nodelay;",
                                         block, re.M)
        assert conn_zone in conn_zones and req_zone in req_zones, head
        assert int(most) > 0 and int(burst) > 0 and int(req_zones[req_zone]) > 0, head
        limits[head] = (conn_zone, int(most), req_zone)
    sockets, pages = limits["/socket.io/"], limits["/"]
    # Websockets are counted apart from page and API requests, and one user at the app's own
    # cap is never stopped by nginx first.
    assert sockets[0] != pages[0] and sockets[2] != pages[2]
    assert sockets[1] >= Config.CHAT_MAX_SOCKETS_PER_USER
    # Every limit is explained where it is set.
    lines = conf.splitlines()
    for index, line in enumerate(lines):
        if re.match(r"\s*limit_(conn|req)(_zone)? ", line):
            assert any("#" in n for n in lines[max(index - 5, 0):index + 1]), line

