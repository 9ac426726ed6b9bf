"""Declaring a JSON API route once: the decorator validates its query string and body with the
pydantic models it names and records it, and the OpenAPI 3.1 document is built from the same
records (pydantic's JSON Schema is the 2020-12 dialect OpenAPI 3.1 uses)."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from flask import Blueprint, Flask, request
from flask_login import current_user
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema

from simplechat.api.schemas import Error
from simplechat.web.errors import api_error
from simplechat.web.strict_numbers import MAX_ID

# Who may call: a user (token or cookie), anyone, or whoever holds the secret in the path.
USER, PUBLIC, SECRET_URL = "user", "public", "secret_url"
FILE = "file"  # an answer that is a file itself, of the type it was uploaded as
TEXT = "text"  # an answer of plain text: "ok" (as Slack answers its webhooks)

ERROR_TEXT = {
    400: "invalid: a parameter or body field is wrong (or csrf: a cookie write without a valid "
         "X-CSRFToken header); empty or too_long for a message",
    401: "unauthorized: no valid token or session",
    403: "forbidden: not a participant (or joining anything but a public channel); not_allowed: "
         "a member lacking the role (owner or admin)",
    404: "not_found: no such thing here (a conversation, a user, a message, an upload)",
    409: "conflict: the client_id was used for another text in this conversation, or an "
         "attachment was sent already; archived: the conversation is read-only; not_group: "
         "a direct conversation; too_many: the channel is full",
    413: "too_large: the body is over MAX_CONTENT_LENGTH",
    429: "rate_limited: wait Retry-After seconds",
    503: "unavailable: a service the server needs is down; try again",
}


@dataclass
class Operation:
    rule: str
    method: str
    endpoint: str
    summary: str
    description: str
    tag: str
    auth: str
    query: type[BaseModel] | None
    body: type[BaseModel] | None
    answers: dict[int, type[BaseModel] | str | None]
    errors: tuple[int, ...] = field(default=())
    path_schemas: dict[str, dict] = field(default_factory=dict)
    upload: str | None = None  # a multipart body with one file in this field
    # A body the view reads itself: JSON of this model, or the same JSON in a form field.
    raw_body: type[BaseModel] | None = None
    form_field: str | None = None


OPERATIONS: list[Operation] = []
_PATH_ARG = re.compile(r"<(?:(\w+):)?(\w+)>")


def operation(bp: Blueprint, rule: str, method: str = "GET", *,
              answers: dict[int, type[BaseModel] | None], errors: tuple[int, ...] = (),
              query: type[BaseModel] | None = None, body: type[BaseModel] | None = None,
              auth: str = USER, tag: str = "chat", raw_body: type[BaseModel] | None = None,
              form_field: str | None = None) -> Callable:
    """Register ``view`` on ``bp`` for ``method rule``; it gets ``query=``/``body=`` as models.

    A caller that is not logged in gets 401 on a USER route; a query or body the models refuse
    gets 400 ``invalid`` (a body must be a JSON object). ``raw_body`` is a body the view reads
    and checks itself, documented as that model's JSON (and, with ``form_field``, as a form
    whose field holds the same JSON)."""

    def decorator(view: Callable) -> Callable:
        summary, _, description = (view.__doc__ or "").strip().partition("\n")

        @functools.wraps(view)
        def wrapper(**kwargs):
            if auth == USER and not current_user.is_authenticated:
                return api_error("unauthorized", 401)
            if query is not None:
                try:
                    kwargs["query"] = query.model_validate(request.args.to_dict())
                except ValidationError:
                    return api_error("invalid", 400)
            if body is not None:
                data = request.get_json(silent=True)
                if not isinstance(data, dict):
                    return api_error("invalid", 400)
                try:
                    kwargs["body"] = body.model_validate(data)
                except ValidationError:
                    return api_error("invalid", 400)
            return view(**kwargs)

        bp.add_url_rule(rule, view_func=wrapper, methods=[method])
        implied = {400} if (query or body or "<" in rule) else set()
        if auth == USER:
            implied.add(401)
        if body is not None or raw_body is not None:
            implied.add(413)
        implied.add(503)
        OPERATIONS.append(Operation(
            rule=rule, method=method.lower(), endpoint=f"{bp.name}.{view.__name__}",
            summary=summary.strip(), description=" ".join(description.split()), tag=tag,
            auth=auth, query=query, body=body, answers=answers,
            errors=tuple(sorted(implied | set(errors))), raw_body=raw_body,
            form_field=form_field))
        return wrapper

    return decorator


def describe(endpoint: str, method: str = "GET", *, summary: str,
             answers: dict[int, type[BaseModel] | str | None], errors: tuple[int, ...] = (),
             upload: str | None = None, tag: str = "chat") -> None:
    """Put a route registered elsewhere in the document: one whose body or answer is not JSON
    (a file upload or download), which the ``operation`` wrapper cannot validate."""
    OPERATIONS.append(Operation(
        rule="", method=method.lower(), endpoint=endpoint, summary=summary, description="",
        tag=tag, auth=USER, query=None, body=None, answers=answers,
        errors=tuple(sorted({400, 401, 503} | ({413} if upload else set()) | set(errors))),
        upload=upload))


def _path(app: Flask, op: Operation) -> tuple[str, list[dict]]:
    """The OpenAPI path of a Flask rule (with its blueprint's prefix) and its parameters."""
    rule = next(r.rule for r in app.url_map.iter_rules(op.endpoint))
    parameters = []
    for converter, name in _PATH_ARG.findall(rule):
        schema = ({"type": "integer", "minimum": 1, "maximum": MAX_ID} if converter == "id"
                  else {"type": "string", "minLength": 1, "pattern": "^[^/]+$"})
        parameters.append({"name": name, "in": "path", "required": True, "schema": schema})
    return _PATH_ARG.sub(lambda m: "{" + m.group(2) + "}", rule), parameters


def _query_parameters(model: type[BaseModel]) -> list[dict]:
    schema = model.model_json_schema(mode="validation")
    required = set(schema.get("required", ()))
    parameters = []
    for name, prop in schema["properties"].items():
        prop = {k: v for k, v in prop.items() if k != "title"}
        description = prop.pop("description", None)
        if "anyOf" in prop:  # "X or null": an absent parameter is the null
            kinds = [p for p in prop["anyOf"] if p.get("type") != "null"]
            if len(kinds) == 1:
                extra = {k: v for k, v in prop.items() if k != "anyOf"}
                prop = {**kinds[0], **extra}
                prop.pop("default", None)
        parameter = {"name": name, "in": "query", "required": name in required, "schema": prop}
        if description:
            parameter["description"] = description
        parameters.append(parameter)
    return parameters


def _fill_settings(schema: object, config) -> None:
    """Replace each ``x-setting`` ({keyword: setting name}) by the keyword with the configured
    value, in place: the document states the limits this server enforces."""
    if isinstance(schema, dict):
        for keyword, name in schema.pop("x-setting", {}).items():
            schema[keyword] = config[name]
        for value in schema.values():
            _fill_settings(value, config)
    elif isinstance(schema, list):
        for value in schema:
            _fill_settings(value, config)


def openapi_document(app: Flask) -> dict:
    """The OpenAPI 3.1 document of every route declared with ``operation``."""
    wanted = [(Error, "serialization")]
    for op in OPERATIONS:
        for documented in (op.body, op.raw_body):
            if documented is not None:
                wanted.append((documented, "validation"))
        wanted += [(m, "serialization") for m in op.answers.values()
                   if m is not None and m not in (FILE, TEXT)]
    wanted = list(dict.fromkeys(wanted))
    refs, top = models_json_schema(wanted, ref_template="#/components/schemas/{model}")
    _fill_settings(top, app.config)
    error_ref = refs[(Error, "serialization")]
    paths: dict[str, dict] = {}
    for op in OPERATIONS:
        path, parameters = _path(app, op)
        if op.query is not None:
            parameters += _query_parameters(op.query)
        responses: dict[str, dict] = {}
        for status, model in op.answers.items():
            description = "OK" if status == 200 else "Created"
            if model == FILE:
                responses[str(status)] = {"description": "the file", "content": {
                    "*/*": {"schema": {"type": "string", "format": "binary"}}}}
                continue
            if model == TEXT:
                responses[str(status)] = {"description": "ok, as plain text", "content": {
                    "text/plain": {"schema": {"type": "string", "const": "ok"}}}}
                continue
            schema = refs[(model, "serialization")] if model else {"type": "object"}
            responses[str(status)] = {"description": description,
                                      "content": {"application/json": {"schema": schema}}}
        for status in op.errors:
            answer = {"description": ERROR_TEXT[status],
                      "content": {"application/json": {"schema": error_ref}}}
            if status == 429:
                answer["headers"] = {"Retry-After": {
                    "description": "seconds to wait", "schema": {"type": "string",
                                                                 "pattern": "^[0-9]+$"}}}
            responses[str(status)] = answer
        entry = {"operationId": op.endpoint.replace(".", "_"), "summary": op.summary,
                 "tags": [op.tag], "parameters": parameters, "responses": responses}
        if op.description:
            entry["description"] = op.description
        if op.body is not None:
            entry["requestBody"] = {"required": True, "content": {
                "application/json": {"schema": refs[(op.body, "validation")]}}}
        if op.raw_body is not None:
            content = {"application/json": {"schema": refs[(op.raw_body, "validation")]}}
            if op.form_field:
                content["application/x-www-form-urlencoded"] = {"schema": {
                    "type": "object", "required": [op.form_field], "properties": {
                        op.form_field: {"type": "string", "description": "the same JSON"}}}}
            entry["requestBody"] = {"required": True, "content": content}
        if op.upload is not None:
            entry["requestBody"] = {"required": True, "content": {"multipart/form-data": {
                "schema": {"type": "object", "required": [op.upload], "properties": {
                    op.upload: {"type": "string", "format": "binary"}}}}}}
        entry["security"] = ([{"bearerToken": []}, {"sessionCookie": []}] if op.auth == USER
                             else [])
        paths.setdefault(path, {})[op.method] = entry
    return {
        "openapi": "3.1.0",
        "info": {"title": "Simple Chat API", "version": "1",
                 "description": "The JSON API for programs: bots, scripts, mobile clients. "
                                "See docs/API.md."},
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": top.get("$defs", {}),
            "securitySchemes": {
                "bearerToken": {"type": "http", "scheme": "bearer",
                                "description": "a personal access token (/profile/tokens)"},
                "sessionCookie": {"type": "apiKey", "in": "cookie", "name": "session",
                                  "description": "the browser's login; writes also need the "
                                                 "X-CSRFToken header"},
            },
        },
    }
