"""Webhooks: outgoing (every new message POSTed, signed) and incoming (a secret URL that posts
into a conversation)."""
