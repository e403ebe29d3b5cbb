"""A TCP reachability check shared by the runner's probes and the local stack's health
checks."""

from __future__ import annotations

import socket


def connection_error(host: str, port: int, timeout: float) -> OSError | None:
    """Why ``host:port`` accepts no TCP connection within ``timeout`` seconds; None when
    it does."""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as error:
        return error
    return None
