"""Secrets kept as hashes: session tokens, API tokens and webhook secrets are stored as their
SHA-256, so a copy of the database lets nobody in."""

from __future__ import annotations

import hashlib


def token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
