"""Fixtures for end-to-end tests: ``make_stack`` builds a deployment on a fresh database and
always tears it down; a failing test prints the tail of every process's log."""

from __future__ import annotations

import pytest

from .harness import Stack, TestDatabase


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def _failed(request) -> bool:
    return any(getattr(getattr(request.node, f"report_{when}", None), "failed", False)
               for when in ("setup", "call"))


@pytest.fixture
def make_stack(request, tmp_path):
    """``make_stack(database="postgresql"|"mariadb", **env)``: a migrated database of its own,
    a Redis key prefix and Celery queue of its own, and nothing started yet."""
    stacks: list[Stack] = []

    def make(database: str = "postgresql", **env: str) -> Stack:
        log_dir = tmp_path / f"stack{len(stacks) + 1}"
        log_dir.mkdir()
        stack = Stack(TestDatabase.create_migrated(database, log_dir=log_dir), log_dir, **env)
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        try:
            if _failed(request):
                print(f"\n===== process logs ({stack.log_dir}) =====\n{stack.logs()}")
        finally:
            try:
                stack.close()
            finally:
                stack.database.drop()


@pytest.fixture
def stack(make_stack) -> Stack:
    """A PostgreSQL-backed deployment (see ``make_stack``)."""
    return make_stack()
