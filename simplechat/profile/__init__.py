"""Profiles: your own profile, editing it, changing the password, other users' public profiles."""

from flask import Blueprint

bp = Blueprint("profile", __name__)

from . import views  # noqa: E402,F401  (routes register on import)
