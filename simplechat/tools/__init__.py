"""Tools that ship with the server but are not part of it (run by hand, never imported by it)."""
