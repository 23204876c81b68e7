"""Helpers and stand-ins shared by the tests of every app and by the benchmarks.

Stand-in exchanges (fake_kraken, fake_kraken_book, fake_coinbase_book) speak the real
protocols; data has the bundled sample files and reference computations, feed runs them through the
live write path, servers runs the ASGI app in a thread, scrape reads /metrics, up runs `manage.py up`;
the functions here are the small waits and ports every test needs.
A test module imports from here, never from another app's tests.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable


def free_port() -> int:
    """A loopback port that nothing listens on (once the probe socket is closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(condition: Callable[[], object], timeout: float = 60.0, what: str = "the condition") -> object:
    """condition()'s first true value, polled; AssertionError after timeout seconds.

    The way to synchronise with another thread or process: a fixed sleep is either too short on a loaded
    machine or too long on a quiet one.
    """
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out after {timeout:g} s waiting for {what}"
        time.sleep(0.05)
    return value
