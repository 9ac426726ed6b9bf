# syntax=docker/dockerfile:1
# Simple Chat images. The default target is the app (web, Celery worker and migrations all run
# it with different commands); the "nginx" target is the front that proxies to it.

FROM nginx:1.28-alpine AS nginx
COPY deploy/nginx/nginx.conf /etc/nginx/nginx.conf

FROM python:3.11-slim AS app
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

RUN groupadd --system --gid 10001 simplechat \
    && useradd --system --uid 10001 --gid simplechat --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin simplechat

# Dependencies first: this layer is rebuilt only when requirements.txt changes.
COPY requirements.txt .
RUN pip install -r requirements.txt

# The code, owned by root and read-only to the user the processes run as.
COPY config.py wsgi.py celery_worker.py gunicorn.conf.py ./
COPY migrations ./migrations
COPY simplechat ./simplechat
# The static files' content-hashed, compressed copies, made once here instead of in every
# container; the web processes serve them read-only (simplechat/web/static_files.py).
ENV STATIC_BUILD_DIR=/app/static-build
RUN python -m simplechat.web.static_files /app/static-build
RUN mkdir -p /app/instance /tmp/simplechat-metrics /data/attachments \
    && chown simplechat:simplechat /app/instance /tmp/simplechat-metrics /data/attachments

USER simplechat
ENV SIMPLECHAT_CONFIG=production \
    PORT=8000 \
    FLASK_APP=wsgi
EXPOSE 8000
CMD ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
