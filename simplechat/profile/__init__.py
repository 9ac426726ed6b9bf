"""Profiles: your own (edit, password, sessions, tokens) and other people's."""

from simplechat.profile.views import bp

__all__ = ["bp"]
