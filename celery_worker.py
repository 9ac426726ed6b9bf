"""Celery entry point: ``celery -A celery_worker.celery worker --loglevel=info``."""

from simplechat import create_app

app = create_app()
celery = app.extensions["celery"]
