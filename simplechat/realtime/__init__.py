"""Real time: rooms, emitting, the socket registry, presence, the fan-out between processes,
the guards on what a socket may send, and the limits on what sockets may hold (connections on
no namespace, unsent packets, sockets per user, event budgets)."""
