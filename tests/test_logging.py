"""Logging from config (level, plain or JSON lines) with user and conversation context, and
unexpected errors in socket handlers recorded in GenericErrorLog."""

from __future__ import annotations

import io
import json
import logging

import pytest
from sqlalchemy import select

from simplechat.chat.events import chat_event
from simplechat.extensions import db
from simplechat.models import GenericErrorLog
from simplechat.observability.logging_setup import configure_logging

log = logging.getLogger("simplechat.tests")


@chat_event("test_explode")
def _explode(user, data: dict) -> dict:
    log.info("about to fail")
    raise RuntimeError(f"boom {data.get('conversation_id')}")


@pytest.fixture
def log_stream(app):
    """The app's log lines, as JSON objects."""
    stream = io.StringIO()
    app.config.update(LOG_FORMAT="json", LOG_LEVEL="INFO")
    configure_logging(app, stream)

    def lines() -> list[dict]:
        return [json.loads(line) for line in stream.getvalue().splitlines()]

    yield lines
    app.config.update(LOG_FORMAT="plain")
    configure_logging(app)


def test_exception_in_socket_handler_answers_unavailable_and_is_recorded(
    make_user, socket_client, log_stream
):
    ada = make_user("ada")
    sio = socket_client(ada)
    ack = sio.emit("test_explode", {"conversation_id": 42}, namespace="/chat", callback=True)
    assert ack == {"ok": False, "error": "unavailable"}
    assert sio.is_connected("/chat")  # one failing event does not end the connection
    row = db.session.scalars(select(GenericErrorLog)).one()
    assert (row.where, row.error_type, row.message, row.user_id) == (
        "socket:test_explode", "RuntimeError", "boom 42", ada.id)
    assert "RuntimeError: boom 42" in row.traceback and "_explode" in row.traceback
    # Logged once, with the socket's user and conversation in the record.
    errors = [entry for entry in log_stream() if entry["level"] == "ERROR"]
    assert len(errors) == 1
    assert errors[0]["message"] == "unexpected error in socket:test_explode"
    assert (errors[0]["user_id"], errors[0]["conversation_id"]) == (ada.id, 42)
    assert "RuntimeError: boom 42" in errors[0]["exc"]
    info = [entry for entry in log_stream() if entry["message"] == "about to fail"]
    assert info[0]["user_id"] == ada.id and info[0]["logger"] == "simplechat.tests"


def test_plain_format_carries_request_context(app):
    stream = io.StringIO()
    app.config.update(LOG_FORMAT="plain", LOG_LEVEL="DEBUG")
    configure_logging(app, stream)
    with app.test_request_context("/chat/7"):
        from flask import g, request

        request.view_args = {"conversation_id": 7}
        g.log_user_id = 3
        log.debug("inside a request")
    log.debug("outside any request")
    first, second = stream.getvalue().splitlines()
    assert first.endswith("DEBUG simplechat.tests [user=3 conv=7] inside a request")
    assert second.endswith("[user=None conv=None] outside any request")


def test_level_filters_records(app):
    stream = io.StringIO()
    app.config.update(LOG_FORMAT="json", LOG_LEVEL="warning")
    configure_logging(app, stream)
    log.info("hidden")
    log.warning("shown", extra={"user_id": 9, "conversation_id": 2})
    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(e["message"], e["user_id"], e["conversation_id"]) for e in entries] == [
        ("shown", 9, 2)]


def test_configuring_again_replaces_the_handler(app):
    first, second = io.StringIO(), io.StringIO()
    configure_logging(app, first)
    configure_logging(app, second)
    log.warning("once")
    assert first.getvalue() == "" and second.getvalue().count("once") == 1


@pytest.mark.parametrize("setting", [{"LOG_LEVEL": "LOUD"}, {"LOG_FORMAT": "xml"}])
def test_bad_logging_settings_stop_startup(database_uri, setting):
    from conftest import make_app

    with pytest.raises(ValueError, match="LOG_"):
        make_app(database_uri, None, **setting)
