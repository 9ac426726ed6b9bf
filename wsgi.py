"""WSGI entry point: ``gunicorn -k eventlet -w 1 -b 0.0.0.0:8000 wsgi:app``."""

from simplechat import create_app

app = create_app()
