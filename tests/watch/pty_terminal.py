"""Drive a command in a real pseudo-terminal (stdlib ``pty``; nothing to install).

The child gets the pty as stdin/stdout/stderr and a fixed window size, so Rich sees a
real terminal and draws its live display; the test reads the bytes back, strips the
escape sequences, and looks for rows and numbers.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Mapping, Sequence

_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][A-Z0-9]|\x1b[=>]")


def plain(raw: bytes) -> str:
    """Terminal output as text: escape sequences removed, carriage returns as newlines."""
    text = raw.decode("utf-8", errors="replace")
    return _ESCAPES.sub("", text).replace("\r\n", "\n").replace("\r", "\n")


class PtyCommand:
    """``cryptoctl ARGS`` running on a pty of ``cols`` x ``rows``."""

    def __init__(
        self,
        args: Sequence[str],
        env: Mapping[str, str],
        *,
        cols: int = 160,
        rows: int = 50,
    ) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        full_env = dict(env) | {"TERM": "xterm-256color", "COLUMNS": str(cols), "LINES": str(rows)}
        full_env.pop("NO_COLOR", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cryptoctl", *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=full_env,
            close_fds=True,
        )
        os.close(slave)
        self.master = master
        self.raw = b""

    def _pump(self, timeout: float) -> None:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if ready:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # the child closed the pty
                chunk = b""
            self.raw += chunk

    @property
    def text(self) -> str:
        return plain(self.raw)

    def wait_for(self, predicate: Callable[[str], bool], timeout: float = 20.0) -> str:
        """Read until ``predicate(text)`` holds; AssertionError with the screen otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._pump(0.1)
            if predicate(self.text):
                return self.text
            if self.proc.poll() is not None:
                self._pump(0.2)
                break
        if predicate(self.text):
            return self.text
        raise AssertionError(f"screen never matched; last output:\n{self.text[-3000:]}")

    def interrupt(self, timeout: float = 20.0) -> int:
        """Ctrl-C (SIGINT), then read until the process exits; returns its exit code."""
        self.proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            self._pump(0.1)
        for _ in range(5):
            self._pump(0.05)
        if self.proc.poll() is None:
            self.kill()
            raise AssertionError(f"did not exit after Ctrl-C; output:\n{self.text[-3000:]}")
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def close(self) -> None:
        self.kill()
        os.close(self.master)
