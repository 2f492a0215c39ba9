"""Free loopback ports for the tests that start real servers (brokers, OPC UA, Modbus TCP, PostgreSQL)."""

from __future__ import annotations

import random
import socket


def free_port() -> int:
    """A free loopback port below Linux's ephemeral range (32768-60999), so no client connection of
    this machine is handed the same number between this check and the server's (re)bind."""
    for _ in range(200):
        port = random.randint(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    msg = "no free port in 20000-32000"
    raise RuntimeError(msg)
