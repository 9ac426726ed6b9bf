"""schemathesis against /api/openapi.json: requests generated from the document, sent with a
token to the real app (database and Redis as configured); no answer is a 5xx, every answer
conforms to the document (status, content type, headers, body schema), and a request the document
allows is never refused as malformed (400): the document states the limits the server enforces."""

from __future__ import annotations

from datetime import datetime

import pytest
import schemathesis
from conftest import app_in_context
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from simplechat.auth.tokens import create_token


def _known_gap(case) -> bool:
    """Requests the document allows but cannot refuse, as OpenAPI has no words for them:
    ``before`` with ``after`` (query parameters cannot exclude each other), an upload whose
    bytes are not the picture its name says (only decoding tells), and a day the calendar
    lacks in a notification time."""
    query = case.query or {}
    if case.operation.path.endswith("/messages") and "before" in query and "after" in query:
        return True
    if case.operation.path.endswith(("/notifications", "/me/settings")):
        return _impossible_date(case.body)
    return case.operation.path.endswith("/attachments")


def _impossible_date(body) -> bool:
    """A UTC time whose day the calendar lacks (31 February): a pattern cannot refuse it."""
    if not isinstance(body, dict):
        return False
    for value in (body.get("muted_until"), body.get("dnd_until")):
        if isinstance(value, str):
            try:
                datetime.strptime(value, "%Y-%m-%d %H:%M:%S")
            except ValueError:
                return True
    return False


@schemathesis.check
def valid_request_accepted(ctx, response, case):
    """schemathesis's positive_data_acceptance (a schema-valid request is not answered 400),
    but for the known gaps above."""
    if _known_gap(case):
        return None
    return positive_data_acceptance(ctx, response, case)


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance, valid_request_accepted]
MAX_EXAMPLES = 25  # per route: keeps `make test` quick


@pytest.fixture
def app(database_uri, redis_url):
    yield from app_in_context(database_uri, redis_url, CHAT_RATE_LIMIT="off")


@pytest.fixture
def api_token(app, make_user, make_conversation):
    """ada (with a token) in a direct conversation that holds a message, and a group."""
    from simplechat.messaging.send import send_message

    ada, bob, cat = make_user("ada"), make_user("bob"), make_user("cat")
    direct = make_conversation(ada, bob)
    make_conversation(ada, bob, cat, title="Group")
    send_message(ada, direct.id, "hello there")
    return create_token(ada, "schemathesis").secret


def test_every_api_answer_conforms_to_the_document(app, api_token):
    # schemathesis's pytest loader (from_fixture) does not run under pytest 9: each operation's
    # strategy is run here with hypothesis directly, as that loader would.
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 9
    headers = {"Authorization": f"Bearer {api_token}"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def conforms(case):
            case.call_and_validate(headers=headers, checks=CHECKS)

        try:
            conforms()
        except Exception as exc:
            raise AssertionError(f"{operation.label}: {exc}") from exc
