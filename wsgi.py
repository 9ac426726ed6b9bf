"""WSGI entry point: ``gunicorn -k eventlet -w 1 -b 0.0.0.0:8000 wsgi:app``."""

from simplechat import create_app
from simplechat.web.heap import settle

app = create_app()
# The startup's objects are frozen and full collections come ten times less often: a process
# holding thousands of sockets no longer stops to scan them all at every quarter's growth.
settle(app.config["WEB_GC_THRESHOLDS"])
