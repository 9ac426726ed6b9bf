"""A real SMTP server for tests (aiosmtpd on 127.0.0.1) that keeps every mail it receives, and
the settings that point an app at it."""

from __future__ import annotations

import email
import re
import socket
import threading
import time
from email.message import EmailMessage
from email.policy import default as default_policy

import pytest
from aiosmtpd.controller import Controller

SITE_URL = "https://chat.example"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Mailbox:
    """What arrived, as parsed mails with their envelope recipients."""

    def __init__(self):
        self._mails: list[EmailMessage] = []
        self._arrived = threading.Condition()
        self.controller: Controller | None = None

    # aiosmtpd's handler hook
    async def handle_DATA(self, server, session, envelope):
        mail = email.message_from_bytes(envelope.original_content, policy=default_policy)
        mail["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
        with self._arrived:
            self._mails.append(mail)
            self._arrived.notify_all()
        return "250 OK"

    def start(self) -> Mailbox:
        for _ in range(5):
            self.controller = Controller(self, hostname="127.0.0.1", port=_free_port())
            try:
                self.controller.start()
                return self
            except OSError:  # the port was taken between the probe and the start
                continue
        raise RuntimeError("no free port for the SMTP server")

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()

    @property
    def port(self) -> int:
        return self.controller.port

    def settings(self, **more) -> dict:
        """App settings that send mail here, with links under SITE_URL."""
        return {"MAIL_SERVER": "127.0.0.1", "MAIL_PORT": self.port, "SITE_URL": SITE_URL,
                "MAIL_DEFAULT_SENDER": "Simple Chat <chat@chat.example>", **more}

    def clear(self) -> None:
        with self._arrived:
            self._mails.clear()

    def mails(self, to: str | None = None) -> list[EmailMessage]:
        with self._arrived:
            return [m for m in self._mails if to is None or to in m["X-Envelope-To"]]

    def wait_for(self, count: int = 1, to: str | None = None,
                 timeout: float = 20) -> list[EmailMessage]:
        """The mails (to ``to``) once at least ``count`` have arrived; fails after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                found = [m for m in self._mails if to is None or to in m["X-Envelope-To"]]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                assert left > 0, f"{len(found)} of {count} mail(s) to {to or 'anyone'} arrived"
                self._arrived.wait(left)


@pytest.fixture(scope="module", name="mailbox")
def mailbox_fixture():
    """``mailbox``: a test module's SMTP server (import ``mailbox_fixture`` into the module)."""
    box = Mailbox().start()
    yield box
    box.stop()


def parts(mail: EmailMessage) -> tuple[str, str]:
    """The plain text and the HTML of a mail."""
    text = mail.get_body(preferencelist=("plain",)).get_content()
    html = mail.get_body(preferencelist=("html",)).get_content()
    return text, html


def links(text: str, prefix: str = SITE_URL) -> list[str]:
    """Every address under ``prefix`` in ``text``, in order."""
    return re.findall(re.escape(prefix) + r"[^\s\"'<>]*", text)
