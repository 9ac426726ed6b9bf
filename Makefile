# Simple Chat: `make run` serves the embedded default, `make test` runs the test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 5000
# The test suite talks to real services; point these elsewhere to use other servers.
TEST_DATABASE_URL ?= postgresql://root@127.0.0.1:5432/postgres
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15
PYTEST_ARGS ?=
# Test processes side by side: the browser, end-to-end and fault suites each keep to one of them
# (they spend half their time waiting on the servers they start), the other modules fill the gaps.
# TEST_WORKERS=0 runs everything in one process.
TEST_WORKERS ?= 3

.PHONY: run test test-fast e2e lint format migrate worker beat clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# What the server needs (make run); the test and tooling set comes on top of it (make test).
$(VENV)/.server: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed: $(VENV)/.server requirements-dev.txt
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

migrate: $(VENV)/.server
	$(BIN)/flask --app wsgi db upgrade

# gunicorn.conf.py prints where to go first once it listens (the register page).
run: migrate
	$(BIN)/gunicorn -k eventlet -w 1 -b $(HOST):$(PORT) --timeout 120 wsgi:app

# No -Q: both queues, the messages' and the webhook deliveries' (docker-compose.yml runs a
# worker for each, so a slow webhook receiver never holds up the storing; docs/DEPLOY.md).
worker: $(VENV)/.server
	$(BIN)/celery -A celery_worker.celery worker --loglevel=info

# Periodic tasks (the missed-message digest sweep every minute, clean-ups), beside `make worker`;
# one per deployment. The embedded default needs none: `make run` sweeps in the web process.
beat: $(VENV)/.server
	$(BIN)/celery -A celery_worker.celery beat --loglevel=info --schedule $(VENV)/celerybeat-schedule

test: $(VENV)/.installed
	TEST_DATABASE_URL=$(TEST_DATABASE_URL) TEST_REDIS_URL=$(TEST_REDIS_URL) \
		$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder \
		$(PYTEST_ARGS)

# ruff, then the floors and the no-circle rule of .importlinter (docs/ARCHITECTURE.md).
lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/lint-imports

format: $(VENV)/.installed
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
