"""Conversations: starting them, who takes part, the inbox (the list), groups, search."""
