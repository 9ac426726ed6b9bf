"""The JSON routes of your own data: ask for an export (one a day), list yours with their
download links, and download one (its owner only, until it expires)."""

from __future__ import annotations

from typing import Literal

from flask import jsonify, send_file, url_for
from flask_login import current_user
from pydantic import BaseModel, Field

from simplechat.api.spec import FILE, describe, operation
from simplechat.api.views import send_answer
from simplechat.profile.export import (
    downloadable,
    export_entry,
    export_file_name,
    open_export,
    start_export,
    user_exports,
)
from simplechat.web.errors import api_error
from simplechat.web.routing import ApiBlueprint

bp = ApiBlueprint("exports", __name__)


class ExportEntry(BaseModel):
    id: int
    status: Literal["pending", "ready", "failed"]
    created_at: str
    expires_at: str = Field(description="when the download link stops working (7 days)")
    url: str | None = Field(description="the download link, once ready")


class ExportStarted(BaseModel):
    ok: Literal[True]
    export: ExportEntry


class ExportList(BaseModel):
    ok: Literal[True]
    exports: list[ExportEntry]


def _entry(export) -> dict:
    return export_entry(export, url_for("exports.download_export", export_id=export.id))


@operation(bp, "/me/export", "POST", answers={202: ExportStarted}, errors=(429,), tag="people")
def request_export():
    """Export my data: a zip of my messages (JSON lines, with their conversations' titles)
    and the files I sent, built in the background.

    202 with the export (pending). One a day (UTC): a second one answers 429 rate_limited
    with Retry-After, the seconds until the next day.
    """
    answer = start_export(current_user._get_current_object())
    if not answer["ok"]:
        return send_answer(answer)
    response = jsonify({"ok": True, "export": _entry(answer["export"])})
    response.status_code = 202
    return response


@operation(bp, "/me/exports", answers={200: ExportList}, tag="people")
def list_exports():
    """My exports that have not expired, newest first: pending, ready (with the download
    link, good for 7 days) or failed (ask again)."""
    return jsonify({"ok": True, "exports": [_entry(e) for e in user_exports(current_user.id)]})


@bp.get("/me/exports/<id:export_id>/download")
def download_export(export_id: int):
    if not current_user.is_authenticated:
        return api_error("unauthorized", 401)
    export = downloadable(current_user.id, export_id)
    if export is None:
        return api_error("not_found", 404)
    try:
        stream = open_export(export)
    except FileNotFoundError:
        return api_error("not_found", 404)
    response = send_file(stream, mimetype="application/zip", as_attachment=True,
                         download_name=export_file_name(export), max_age=0)
    response.headers["Cache-Control"] = "private, no-store"
    return response


describe("exports.download_export", answers={200: FILE}, errors=(404,), tag="people",
         summary="Download my export (a zip): 404 for another user's, one not ready, or one "
                 "past its 7 days")
