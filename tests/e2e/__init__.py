"""End-to-end tests: real gunicorn, Celery, PostgreSQL/MariaDB and Redis processes."""
