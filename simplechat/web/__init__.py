"""The HTTP shell every transport shares: routing, error answers, security headers, health,
the manifest and static files."""
