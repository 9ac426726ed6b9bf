"""The attachment routes: upload to a conversation, fetch a file or its thumbnail."""

from __future__ import annotations

from flask import jsonify, request, send_file
from flask_login import current_user

from ..api.schemas import Uploaded
from ..api.spec import FILE, describe
from ..http_errors import api_error
from . import bp
from .records import is_raster, servable, upload
from .store import attachment_store

# A file is served as itself, never as a page of this site: no script, no plugin, no frame.
FILE_CSP = "default-src 'none'; img-src 'self'; sandbox"


@bp.before_request
def require_login():
    if not current_user.is_authenticated:
        return api_error("unauthorized", 401)
    return None


@bp.post("/conversations/<id:conversation_id>/attachments", endpoint="upload")
def upload_attachment(conversation_id: int):
    """Multipart, field ``file``: 201 with the attachment, to be sent with a message."""
    attachment, refusal = upload(current_user.id, conversation_id,
                                 lambda: request.files.get("file"))
    if refusal:
        return api_error(refusal.code, refusal.status, refusal.retry_after)
    return jsonify({"ok": True, "attachment": attachment}), 201


@bp.get("/attachments/<attachment_id>")
def attachment_file(attachment_id: str):
    """The file, to participants only (404 otherwise): inline for a raster image, else as a
    download."""
    attachment = servable(current_user.id, attachment_id)
    if attachment is None:
        return api_error("not_found", 404)
    inline = is_raster(attachment)
    return _file_response(attachment.id, attachment.content_type if inline else
                          (attachment.content_type or "application/octet-stream"),
                          attachment.name, inline)


@bp.get("/attachments/<attachment_id>/thumbnail")
def attachment_thumbnail(attachment_id: str):
    attachment = servable(current_user.id, attachment_id)
    if attachment is None or not attachment.has_thumbnail:
        return api_error("not_found", 404)
    return _file_response(attachment.id + ".thumb", "image/webp", "thumbnail.webp", True)


def _file_response(key: str, content_type: str, name: str, inline: bool):
    try:
        stream = attachment_store().open(key)
    except FileNotFoundError:
        return api_error("not_found", 404)
    response = send_file(stream, mimetype=content_type, as_attachment=not inline,
                         download_name=name, conditional=True, etag=False, max_age=0)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = FILE_CSP
    # Private, and asked again each time: a deleted message's files must stop being served.
    response.headers["Cache-Control"] = "private, no-cache"
    return response


# In the API's OpenAPI document beside the JSON routes (their bodies or answers are files).
describe("attachments.upload", "POST", upload="file", answers={201: Uploaded},
         errors=(404, 429), tag="attachments",
         summary="Upload a file to a conversation (multipart, field file), to send with a "
                 "message: 413 too_large past CHAT_MAX_ATTACHMENT_BYTES, 429 rate_limited "
                 "past CHAT_UPLOAD_RATE_LIMIT uploads per user")
describe("attachments.attachment_file", answers={200: FILE}, errors=(404,), tag="attachments",
         summary="The file, to participants only: inline for a raster image, else a download")
describe("attachments.attachment_thumbnail", answers={200: FILE}, errors=(404,),
         tag="attachments", summary="An image's thumbnail (WebP), to participants only")
