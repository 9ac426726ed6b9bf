"""Attachments: files uploaded to a conversation and sent with a message (``records``), the
store that keeps them (``store``), images (``images``) and pruning (``prune``)."""
