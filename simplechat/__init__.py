"""Simple Chat: a real-time chat server on Flask and Flask-SocketIO."""

from simplechat.app import create_app

__all__ = ["create_app"]
