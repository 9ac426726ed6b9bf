"""Real time: rooms, emitting, the socket registry, presence, the fan-out between processes,
and the guards on what a socket may send."""
