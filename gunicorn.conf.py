"""Gunicorn settings for Simple Chat: ``gunicorn -c gunicorn.conf.py wsgi:app``.

Every value comes from the environment so one image serves every deployment; options given on
the command line override this file.

Several workers on one port (WEB_CONCURRENCY > 1) work because browsers use the websocket
transport: a Socket.IO session then lives on one connection, which the kernel hands to one worker,
and Redis fans messages out between workers. With long-polling enabled, each poll is a new
request that may land on another worker, which does not know the session; run one worker per
port then and pin clients to a port at the load balancer (see docs/DEPLOY.md).
"""

import os
import signal


def _int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


# Where to listen: BIND wins, else PORT on every interface.
bind = [os.environ.get("BIND") or f"0.0.0.0:{_int('PORT', 8000)}"]

# An asynchronous worker keeps thousands of idle websockets open; scale with more workers (one
# per core) or more hosts. eventlet is the default; gevent needs SOCKETIO_ASYNC_MODE=gevent too.
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "eventlet")
workers = _int("WEB_CONCURRENCY", 1)
worker_connections = _int("GUNICORN_WORKER_CONNECTIONS", 1000)

# Async workers notify the master from their own loop, so a long-lived websocket never looks
# like a hung worker; the timeout only catches a blocked loop.
timeout = _int("GUNICORN_TIMEOUT", 60)
# On SIGTERM (a stop, or the old workers of a graceful reload on HUP) a worker stops accepting,
# tells each client when to reconnect (spread over CHAT_RESTART_WINDOW_MS), lets events and
# requests in flight finish, closes its websockets and exits once they are gone; clients
# reconnect to another worker and catch up with `join` + `after` (post_worker_init below).
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 15)
keepalive = _int("GUNICORN_KEEPALIVE", 5)

# Headers from the reverse proxy (nginx, a load balancer) are trusted only from these addresses.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")

accesslog = os.environ.get("GUNICORN_ACCESSLOG", "-")  # "-": stdout
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms "%(a)s"'

# gunicorn's control socket defaults to one path per user, which several servers on one host
# would share; it is off unless GUNICORN_CONTROL_SOCKET names a path of this server's own.
if os.environ.get("GUNICORN_CONTROL_SOCKET"):
    control_socket = os.environ["GUNICORN_CONTROL_SOCKET"]
else:
    control_socket_disable = True

# Request line and header limits stay at gunicorn's defaults; bodies are capped by the app.


def when_ready(server):
    """Say where to go first: the register page, on each address served."""
    for listener in server.LISTENERS:
        address = str(listener).replace("://0.0.0.0:", "://127.0.0.1:")
        if address.startswith("http"):
            server.log.info("Simple Chat is ready: open %s/auth/register to create an account "
                            "(or %s/auth/login)", address, address)


def post_worker_init(worker):
    """Before the worker accepts: the connections its first sockets need are opened
    (simplechat/web/warm.py: a restart is met by every client at once). SIGTERM drains the
    worker's sockets (simplechat/realtime/restart.py) as well as stopping its accepting, as
    gunicorn's own handler does; its Socket.IO sockets would otherwise hold it until
    graceful_timeout and then be cut off all at once."""
    app = getattr(worker, "wsgi", None)
    extensions = getattr(app, "extensions", {})
    if "simplechat" in extensions:
        from simplechat.web.warm import open_pools

        open_pools(app)
    drain = extensions.get("simplechat.drain")
    if drain is None:
        return

    def stop(signum, frame):
        worker.alive = False  # gunicorn's handle_exit: the run loop stops accepting within 1 s
        drain.begin(worker.cfg.graceful_timeout)

    signal.signal(signal.SIGTERM, stop)


def worker_exit(server, worker):
    """In the worker, once its run loop has returned (its last connection ended): the drain
    that SIGTERM began finishes its last round and reports before the process goes."""
    drain = getattr(getattr(worker, "wsgi", None), "extensions", {}).get("simplechat.drain")
    if drain is not None:
        drain.finish()


def child_exit(server, worker):
    """With PROMETHEUS_MULTIPROC_DIR set, a dead worker's open sockets stop counting."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
