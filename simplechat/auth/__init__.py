"""Authentication: register, log in, log out; server-side sessions and API tokens."""

from simplechat.auth.views import bp

__all__ = ["bp"]
