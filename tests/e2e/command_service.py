"""A slash command's service for the tests: an HTTP server on 127.0.0.1 that checks each
request's two signatures (Simple Chat's and Slack's) with the command's secret, records its
form fields and answers as told."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs


class CommandService:
    """A command's service: checks each request's signatures (401 if wrong), records its form
    fields and answers with ``reply(fields)``: (status, content type, body), after ``delay``
    seconds."""

    def __init__(self):
        self.secret = ""
        self.more_secrets: list[str] = []
        self.calls: list[dict] = []
        self.refused = 0
        self.delay = 0.0
        self.reply = lambda fields: (200, "application/json", b"")
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if not service.signed(self.headers, body):
                    service.refused += 1
                    self.send_response(401)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                fields = {k: v[0] for k, v in parse_qs(body.decode(), keep_blank_values=True)
                          .items()}
                fields["_content_type"] = self.headers["Content-Type"]
                service.calls.append(fields)
                time.sleep(service.delay)
                status, content_type, answer = service.reply(fields)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except OSError:  # the caller gave up waiting
                    pass

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/command"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def signed(self, headers, body: bytes) -> bool:
        """Both signatures made with the secret (or one of ``more_secrets``: several commands
        calling one service), a timestamp of the last five minutes, the event ``command``."""
        return any(self._signed_with(secret, headers, body)
                   for secret in (self.secret, *self.more_secrets))

    @staticmethod
    def _signed_with(secret: str, headers, body: bytes) -> bool:
        ours = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        stamp = headers.get("X-Slack-Request-Timestamp", "")
        slacks = "v0=" + hmac.new(secret.encode(), f"v0:{stamp}:".encode() + body,
                                  hashlib.sha256).hexdigest()
        return (hmac.compare_digest(headers.get("X-SimpleChat-Signature", ""), ours)
                and hmac.compare_digest(headers.get("X-Slack-Signature", ""), slacks)
                and abs(time.time() - int(stamp or 0)) < 300
                and headers.get("X-SimpleChat-Event") == "command")

    def answers(self, payload: dict | str, status: int = 200) -> None:
        if isinstance(payload, str):
            self.reply = lambda fields: (status, "text/plain; charset=utf-8", payload.encode())
        else:
            self.reply = lambda fields: (status, "application/json", json.dumps(payload).encode())

    def close(self):
        self.server.shutdown()
        self.server.server_close()
