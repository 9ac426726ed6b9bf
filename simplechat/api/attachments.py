"""The attachment routes: upload to a conversation, fetch a file or its thumbnail; and the
request class that lets an upload's body be larger than other requests'."""

from __future__ import annotations

from collections.abc import Callable

from flask import Request, current_app, jsonify, request, send_file
from flask_login import current_user

from simplechat.api.schemas import Uploaded
from simplechat.api.spec import FILE, describe
from simplechat.attachments.images import HEAD_BYTES, raster_type
from simplechat.attachments.records import Refusal, inline_type, servable, upload, withdraw
from simplechat.attachments.store import attachment_store
from simplechat.observability.metrics import count_refusal
from simplechat.web.errors import api_error
from simplechat.web.routing import ApiBlueprint

bp = ApiBlueprint("attachments", __name__)
UPLOAD_ENDPOINT = "attachments.upload"
MULTIPART_SLACK = 64 * 1024  # room for the multipart headers around the file


class ChatRequest(Request):
    """A request whose body limit is ``MAX_CONTENT_LENGTH``, except an upload's, which may be as
    large as ``CHAT_MAX_ATTACHMENT_BYTES``. Chosen by the matched route before anything reads
    the body (the CSRF check reads the form first), and checked against Content-Length before
    a byte of it is read; a body without one is cut off as it streams past the limit."""

    @property
    def max_content_length(self) -> int | None:
        if (self._max_content_length is None and self.url_rule is not None
                and self.url_rule.endpoint == UPLOAD_ENDPOINT):
            return current_app.config["CHAT_MAX_ATTACHMENT_BYTES"] + MULTIPART_SLACK
        return super().max_content_length

    @max_content_length.setter
    def max_content_length(self, value: int | None) -> None:
        self._max_content_length = value

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
        return _refused(refusal)
    return jsonify({"ok": True, "attachment": attachment}), 201


def _refused(refusal: Refusal):
    if refusal.status in (429, 503):
        count_refusal(f"upload_{refusal.code}")
    if refusal.limits:  # too_many: which limits, so a client can say it
        response = jsonify({"ok": False, "error": refusal.code, **refusal.limits})
        response.status_code = refusal.status
        return response
    return api_error(refusal.code, refusal.status, refusal.retry_after)


@bp.get("/attachments/<attachment_id>")
def attachment_file(attachment_id: str):
    """The file, to participants only (404 otherwise): inline with its type for a PNG, JPEG,
    GIF or WebP (by its bytes), else a download of type application/octet-stream."""
    attachment = servable(current_user.id, attachment_id)
    if attachment is None:
        return api_error("not_found", 404)
    return _file_response(attachment.id, attachment.name,
                          lambda head: inline_type(attachment, head))


@bp.delete("/attachments/<attachment_id>")
def withdraw_attachment(attachment_id: str):
    """Delete one's own upload that was not sent: ``{"ok": true}``, else 404."""
    if not withdraw(current_user.id, attachment_id):
        return api_error("not_found", 404)
    return jsonify({"ok": True})


@bp.get("/attachments/<attachment_id>/thumbnail")
def attachment_thumbnail(attachment_id: str):
    attachment = servable(current_user.id, attachment_id)
    if attachment is None or not attachment.has_thumbnail:
        return api_error("not_found", 404)
    return _file_response(attachment.id + ".thumb", "thumbnail.webp",
                          lambda head: "image/webp" if raster_type(head) == "image/webp" else None)


def _file_response(key: str, name: str, shown_as: Callable[[bytes], str | None]):
    """The stored file ``key``: inline as ``shown_as(its first bytes)``, or when that is None
    as a download of type application/octet-stream."""
    store = attachment_store()
    try:
        # Its first bytes from a stream of their own: gunicorn sends a file with sendfile()
        # from the descriptor's offset, which a buffered read moves past what seek(0) restores.
        with store.open(key) as start:
            content_type = shown_as(start.read(HEAD_BYTES))
        stream = store.open(key)
    except FileNotFoundError:
        return api_error("not_found", 404)
    response = send_file(stream, mimetype=content_type or "application/octet-stream",
                         as_attachment=content_type is None, download_name=name,
                         conditional=True, etag=False, max_age=0)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = FILE_CSP
    # Private, and asked again each time: a deleted message's files must stop being served.
    response.headers["Cache-Control"] = "private, no-cache"
    return response


# In the API's OpenAPI document beside the JSON routes (their bodies or answers are files).
describe("attachments.upload", "POST", upload="file", answers={201: Uploaded},
         errors=(404, 429), tag="attachments",
         summary="Upload a file to a conversation (multipart, field file), to send with a "
                 "message: 413 too_large past CHAT_MAX_ATTACHMENT_BYTES, 400 invalid_image "
                 "for a picture that does not decode (or a JPEG past CHAT_MAX_JPEG_SCANS "
                 "scans), 429 rate_limited past CHAT_UPLOAD_RATE_LIMIT uploads per user, 429 "
                 "too_many past CHAT_MAX_UNSENT_UPLOADS or CHAT_MAX_UNSENT_UPLOAD_BYTES of "
                 "unsent uploads, 503 unavailable while the image decoders are all busy")
describe("attachments.attachment_file", answers={200: FILE}, errors=(404,), tag="attachments",
         summary="The file, to participants only: inline for a PNG, JPEG, GIF or WebP (by its "
                 "bytes), else a download of type application/octet-stream")
describe("attachments.withdraw_attachment", "DELETE", answers={200: None}, errors=(404,),
         tag="attachments",
         summary="Delete your own upload that was not sent (it stops counting against the "
                 "unsent quota): 404 for a sent one, another user's, or none")
describe("attachments.attachment_thumbnail", answers={200: FILE}, errors=(404,),
         tag="attachments", summary="An image's thumbnail (WebP), to participants only")
