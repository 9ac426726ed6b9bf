"""Outgoing mail: sending through Flask-Mailman, only off the request path (sending.py)."""
