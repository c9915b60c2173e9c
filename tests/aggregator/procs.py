"""Subprocess aggregators and background producers for the crash/scale-out tests."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from cryptoctl.settings import Settings
from cryptoctl.tick import Tick
from tests.aggregator.data import scalar
from tests.helpers import produce_ticks, stack_env


def start_aggregator(
    settings: Settings, *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """`cryptoctl aggregate --format json ARGS` on these settings (``env``: on top)."""
    cmd = [sys.executable, "-m", "cryptoctl", "aggregate", "--format", "json", *args]
    return subprocess.Popen(
        cmd, env=stack_env(settings) | (env or {}), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def committed(settings: Settings) -> int:
    """Messages covered by the stored checkpoints (sum of next offsets)."""
    return int(scalar(settings, "SELECT coalesce(sum(next_offset), 0) FROM processing_metadata"))


def wait_for(what: str, predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def finish(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


class BackgroundProducer:
    """Produces ticks in chunks at a steady pace from a thread (a live stream)."""

    def __init__(self, settings: Settings, ticks: Sequence[Tick | Any], chunk: int,
                 pause_s: float) -> None:
        self.error: BaseException | None = None

        def run() -> None:
            try:
                for i in range(0, len(ticks), chunk):
                    produce_ticks(settings, ticks[i : i + chunk])
                    time.sleep(pause_s)
            except BaseException as exc:
                self.error = exc

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def join(self, timeout: float = 120) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "producer did not finish"
        assert self.error is None, self.error
