"""Messages: the send path, payloads, Markdown, mentions, history, replies, reactions, read
state, edits, system lines, and their SQL side (storage and Celery tasks)."""
