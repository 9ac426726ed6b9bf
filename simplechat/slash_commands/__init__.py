"""Slash commands: ``/name text`` typed in a conversation calls a team's own service, signed,
and its answer is shown to the caller alone or posted as the command's bot (Slack's shape)."""
