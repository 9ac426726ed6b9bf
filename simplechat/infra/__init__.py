"""Infrastructure: Redis clients, the recent-message cache, rate limits, the write buffer and
intake, membership and login caches, message ids, Celery, JSON, CLI helpers."""
