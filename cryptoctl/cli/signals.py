"""Ctrl-C and SIGTERM for the long-running commands, in one place.

The first signal asks the work to stop (flush, commit, close, summary); a second Ctrl-C
aborts at once (KeyboardInterrupt -> exit 130 in ``cryptoctl.cli.app.main``).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def stop_on_signals(
    stop: threading.Event, on_stop: Callable[[], None] | None = None
) -> Iterator[None]:
    """First Ctrl-C/SIGTERM sets ``stop`` (and calls ``on_stop``); a second Ctrl-C aborts."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be installed from the main thread
        return

    def handler(signum: int, _frame: Any) -> None:
        if stop.is_set():
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            return
        stop.set()
        if on_stop is not None:
            on_stop()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
