"""Static files: content-hashed URLs, Brotli and gzip, a year's immutable caching (WhiteNoise),
the favicon and the web app manifest; in the embedded default and through real gunicorn."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import struct
from pathlib import Path

import brotli
import pytest
import requests
from werkzeug.datastructures import ResponseCacheControl
from werkzeug.http import parse_cache_control_header

from simplechat.web.static_files import build, hashed_name
from tests.e2e.harness import Stack, TestDatabase

STATIC = Path(__file__).resolve().parents[1] / "simplechat" / "static"
ASSET = re.compile(r'<(?:link|script)\b[^>]*?(?:href|src)="(/static/[^"]+)"')
YEAR = 31536000


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]


def source_of(url: str) -> Path:
    """The source file a hashed static URL stands for (``/static/css/app.<hash>.css``)."""
    relative = url.removeprefix("/static/")
    head, _, name = relative.rpartition("/")
    plain = re.sub(r"\.[0-9a-f]{12}(?=\.[^.]+$|$)", "", name)
    return STATIC / head / plain


def assets(html: str) -> list[str]:
    return ASSET.findall(html)


def login(app, user):
    http = app.test_client()
    response = http.post("/auth/login",
                         data={"username": user.username, "password": "correct horse battery"})
    assert response.status_code == 302
    return http


@pytest.fixture
def pages(app, make_user, make_conversation):
    """Every page, as (client, path): logged-out ones and a logged-in user's."""
    ada = make_user("ada")
    bob = make_user("bob")
    cyd = make_user("cyd")
    direct = make_conversation(ada, bob)
    group = make_conversation(ada, bob, cyd, title="Team")
    anonymous = app.test_client()
    http = login(app, ada)
    return ([(anonymous, "/auth/login"), (anonymous, "/auth/register")]
            + [(http, path) for path in (
                "/chat/", "/chat/new", f"/chat/{direct.id}", f"/chat/{group.id}", "/profile/",
                "/profile/edit", "/profile/password", "/profile/sessions", "/profile/bob")])


def page(http, path: str) -> str:
    response = http.get(path)
    assert response.status_code == 200, path
    return response.get_data(as_text=True)


# --------------------------------------------------------------------------- the build


def test_hashed_name_puts_the_hash_before_the_last_extension():
    assert hashed_name("css/app.css", "abc") == "css/app.abc.css"
    assert hashed_name("vendor/jquery/jquery.min.js", "abc") == "vendor/jquery/jquery.min.abc.js"
    assert hashed_name("vendor/bootstrap/LICENSE", "abc") == "vendor/bootstrap/LICENSE.abc"


def test_a_changed_file_gets_a_new_name_and_the_old_copy_stays(tmp_path):
    source, out = tmp_path / "static", tmp_path / "build"
    (source / "css").mkdir(parents=True)
    first = b"body { color: black; }\n" * 50
    (source / "css" / "app.css").write_bytes(first)
    manifest = build(source, out)
    assert manifest == {"css/app.css": f"css/app.{sha(first)}.css"}

    second = first.replace(b"black", b"navy")
    (source / "css" / "app.css").write_bytes(second)
    changed = build(source, out)
    assert changed["css/app.css"] == f"css/app.{sha(second)}.css" != manifest["css/app.css"]
    for bytes_, hashed in ((first, manifest["css/app.css"]), (second, changed["css/app.css"])):
        served = out / "files" / hashed
        assert served.read_bytes() == bytes_
        assert brotli.decompress((out / "files" / f"{hashed}.br").read_bytes()) == bytes_
        assert gzip.decompress((out / "files" / f"{hashed}.gz").read_bytes()) == bytes_
    assert not list((out / "staging").iterdir())  # nothing half-made is left behind


# --------------------------------------------------------------------------- serving


def test_every_page_links_its_static_files_under_the_hash_of_their_content(pages):
    seen = set()
    for http, path in pages:
        for url in assets(page(http, path)):
            data = source_of(url).read_bytes()
            assert sha(data) in url, url
            seen.add(url)
    names = {source_of(url).relative_to(STATIC).as_posix() for url in seen}
    assert {"css/app.css", "vendor/bootstrap/bootstrap.min.css", "vendor/jquery/jquery.min.js",
            "vendor/select2/select2.min.js", "js/chat.js", "icons/favicon.ico"} <= names


@pytest.mark.parametrize("encoding, decode", [
    ("br", brotli.decompress),
    ("gzip", gzip.decompress),
    ("gzip, deflate, br", brotli.decompress),  # a browser's list: the smallest, Brotli
])
def test_text_files_come_compressed_when_the_client_accepts_it(client, encoding, decode):
    for url in assets(page(client, "/auth/login")):
        source = source_of(url)
        if source.suffix not in (".css", ".js"):
            continue
        response = client.get(url, headers={"Accept-Encoding": encoding})
        assert response.status_code == 200
        assert response.headers["Content-Encoding"] == encoding.split(",")[-1].strip()
        assert response.headers["Vary"] == "Accept-Encoding"
        assert int(response.headers["Content-Length"]) < source.stat().st_size / 2
        assert decode(response.get_data()) == source.read_bytes()
        response.close()


def test_without_accept_encoding_the_file_comes_as_it_is(client):
    url = next(u for u in assets(page(client, "/auth/login")) if "bootstrap.min" in u)
    response = client.get(url, headers={"Accept-Encoding": ""})
    assert "Content-Encoding" not in response.headers
    assert response.headers["Vary"] == "Accept-Encoding"
    assert response.mimetype == "text/css" and response.mimetype_params["charset"] == "utf-8"
    assert response.get_data() == source_of(url).read_bytes()
    response.close()


def test_hashed_files_are_cached_for_a_year_and_pages_are_not(pages):
    http, path = pages[2]
    html = http.get(path)
    for url in assets(html.get_data(as_text=True)):
        response = http.get(url)
        cache = response.cache_control
        assert cache.public and cache.immutable and cache.max_age == YEAR, url
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        response.close()
    for http, path in pages:
        cache = http.get(path).cache_control
        assert not cache.immutable and not cache.max_age, path


def test_the_plain_name_still_works_but_is_revalidated(client):
    response = client.get("/static/css/app.css")
    assert response.status_code == 200
    assert response.get_data() == (STATIC / "css" / "app.css").read_bytes()
    cache = response.cache_control
    assert cache.no_cache and not cache.immutable
    response.close()


def test_socket_io_and_the_api_are_not_static_files(app, make_user):
    http = login(app, make_user("ada"))
    handshake = http.get("/socket.io/?EIO=4&transport=polling")
    assert handshake.status_code == 200
    assert handshake.get_data(as_text=True).startswith('0{"sid":')  # engine.io's open packet
    api = http.get("/api/users?q=a", headers={"Accept-Encoding": "br"})
    assert api.status_code == 200 and api.is_json
    assert "Content-Encoding" not in api.headers and "immutable" not in api.headers.get(
        "Cache-Control", "")
    assert http.get("/static/no-such-file.12345678abcd.css").status_code == 404


# --------------------------------------------------------------------------- the web app


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_the_favicon_is_served_at_the_root(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 200
    assert response.mimetype in ("image/vnd.microsoft.icon", "image/x-icon")
    assert response.get_data() == (STATIC / "icons" / "favicon.ico").read_bytes()
    assert response.get_data()[:4] == b"\x00\x00\x01\x00"  # an ICO header
    response.close()


def test_the_manifest_describes_an_installable_app_whose_icons_exist(client):
    response = client.get("/manifest.webmanifest")
    assert response.status_code == 200
    assert response.mimetype == "application/manifest+json"
    manifest = json.loads(response.get_data())
    assert manifest["name"] == "Simple Chat" and manifest["short_name"]
    assert manifest["display"] == "standalone"
    assert manifest["start_url"] == "/chat/"
    assert re.fullmatch(r"#[0-9a-f]{6}", manifest["theme_color"])
    assert re.fullmatch(r"#[0-9a-f]{6}", manifest["background_color"])
    sizes = set()
    for icon in manifest["icons"]:
        served = client.get(icon["src"])
        assert served.status_code == 200 and served.mimetype == icon["type"] == "image/png"
        width, height = png_size(served.get_data())
        assert icon["sizes"] == f"{width}x{height}"
        sizes.add((icon["sizes"], icon["purpose"]))
        served.close()
    assert {("192x192", "any"), ("512x512", "any"), ("512x512", "maskable")} <= sizes


def test_every_page_links_the_icons_manifest_and_theme_colours(pages):
    for http, path in pages:
        html = page(http, path)
        assert '<link rel="manifest" href="/manifest.webmanifest">' in html, path
        assert re.search(r'<link rel="icon" href="/static/icons/favicon\.[0-9a-f]{12}\.ico"', html)
        assert re.search(r'<link rel="apple-touch-icon" href="/static/icons/apple-touch-icon\.'
                         r'[0-9a-f]{12}\.png"', html), path
        for scheme in ("light", "dark"):
            assert re.search(r'<meta name="theme-color" content="#[0-9a-f]{6}" '
                             rf'media="\(prefers-color-scheme: {scheme}\)">', html), path
        icon = re.search(r'rel="apple-touch-icon" href="([^"]+)"', html).group(1)
        assert png_size(http.get(icon).get_data()) == (180, 180)


def test_every_script_is_deferred_external_and_in_order(pages):
    """Deferred scripts run in document order once the page is parsed: Bootstrap first, jQuery
    right before Select2 on the pages that use it (only they need jQuery), Socket.IO before our
    files; none may be inline (the CSP forbids it anyway)."""
    select2_pages = 0
    for http, path in pages:
        scripts = re.findall(r"<script\b[^>]*>", page(http, path))
        for tag in scripts:
            # External and deferred (data-* attributes may hand a script its routes).
            assert " src=" in tag and re.search(r"\sdefer[\s>]", tag), (path, tag)
            assert not re.search(r"\s(async|type=\"module\")", tag), (path, tag)
        order = [source_of(re.search(r'src="([^"]+)"', tag).group(1)).name for tag in scripts]
        assert order[0] == "bootstrap.bundle.min.js", path
        if "select2.min.js" in order:
            select2_pages += 1
            assert order.index("jquery.min.js") == order.index("select2.min.js") - 1, path
        else:
            assert "jquery.min.js" not in order, path
        if "socket.io.min.js" in order:
            ours = [i for i, name in enumerate(order) if not name.endswith(".min.js")]
            assert order.index("socket.io.min.js") < min(ours), path
    assert select2_pages == 2  # the new-conversation page and the group's page


# --------------------------------------------------------------------------- real gunicorn


@pytest.fixture
def stack(tmp_path):
    database = TestDatabase.create_migrated("postgresql", log_dir=tmp_path)
    deployment = Stack(database, tmp_path)
    try:
        yield deployment
    finally:
        try:
            deployment.close()
        finally:
            database.drop()


@pytest.mark.e2e
def test_gunicorn_in_production_config_serves_compressed_immutable_files_and_sockets(stack):
    web = stack.start_web(workers=2)
    ada = stack.register(web)
    html = ada.session.get(web.url + "/chat/", timeout=10)
    assert html.status_code == 200
    assert "immutable" not in html.headers.get("Cache-Control", "")
    urls = assets(html.text)
    assert any("bootstrap.min" in url for url in urls)
    for url in urls:
        source = source_of(url).read_bytes()
        assert sha(source) in url
        response = requests.get(web.url + url, headers={"Accept-Encoding": "br"}, timeout=10,
                                stream=True)
        cache = parse_cache_control_header(response.headers["Cache-Control"],
                                           cls=ResponseCacheControl)
        assert response.status_code == 200 and cache.immutable and cache.max_age == YEAR
        body = response.raw.read(decode_content=False)
        if url.endswith((".css", ".js")):
            assert response.headers["Content-Encoding"] == "br"
            assert brotli.decompress(body) == source
    for path, kind in (("/favicon.ico", "image/"), ("/manifest.webmanifest",
                                                     "application/manifest+json")):
        response = requests.get(web.url + path, timeout=10)
        assert response.status_code == 200 and response.headers["Content-Type"].startswith(kind)
    # Socket.IO goes past the static layer: a websocket connects and joins.
    sock = ada.socket(web)
    assert sock.connected
