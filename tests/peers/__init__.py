"""Real peers the sign-in tests start on 127.0.0.1: an OpenID provider and an LDAP directory."""

from __future__ import annotations

import subprocess


def stop_process(process: subprocess.Popen) -> None:
    """Ask a peer's process to stop; kill it when it has not within 10 seconds."""
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)
