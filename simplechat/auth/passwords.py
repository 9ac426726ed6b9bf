"""Password hashes, computed on the CPU pool (infra.offload), never on the event loop: one scrypt
takes some 50-100 ms of CPU, and on the loop it stops every other socket and request for that
long. Every login, registration and password change of the server goes through here; ``Busy``
(the pool is full) reaches the caller, which answers 503.

The hash is read and written here, in the caller's thread; only werkzeug's function runs on the
pool (an ORM object is not for another thread)."""

from __future__ import annotations

import functools

from flask import current_app
from werkzeug.security import check_password_hash, generate_password_hash

from simplechat.infra.offload import Busy, offload
from simplechat.models import User

__all__ = ["Busy", "check_unknown", "hash_password", "password_matches", "set_password"]

BUSY_MESSAGE = "The server is busy. Try again in a moment."


def _method() -> str:
    return current_app.config.get("PASSWORD_HASH_METHOD", "scrypt")


def hash_password(password: str) -> str:
    return offload(generate_password_hash, password, method=_method())


def set_password(user: User, password: str) -> None:
    user.password_hash = hash_password(password)


def password_matches(user: User, password: str) -> bool:
    return offload(check_password_hash, user.password_hash, password)


@functools.cache
def _dummy_hash(method: str) -> str:
    return generate_password_hash("not a real password", method=method)


def check_unknown(password: str) -> None:
    """Spend what checking a password costs, for a name that has no account: the answer's
    timing then does not tell which names are accounts."""
    method = _method()
    offload(lambda: check_password_hash(_dummy_hash(method), password))
