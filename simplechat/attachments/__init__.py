"""Attachments: files uploaded to a conversation and sent with a message, their routes under
/api/, and the store that keeps the files (``store.py``)."""

from __future__ import annotations

from flask import Request, current_app

from ..chat import ApiBlueprint

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


from . import views  # noqa: E402,F401  (routes register on import)
