"""Process bookkeeping for the local runtime: records, liveness, stopping by PID."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil


@dataclass(frozen=True)
class ProcessRecord:
    """What `up` wrote down about a server it started."""

    service: str
    pid: int
    create_time: float  # guards against a recycled PID belonging to another program
    host: str
    port: int
    started_at: float
    version: str = ""
    cluster_id: str = ""

    def process(self) -> psutil.Process | None:
        """The live process, or None when it is gone (or the PID now belongs to another)."""
        try:
            proc = psutil.Process(self.pid)
            if abs(proc.create_time() - self.create_time) > 1.0:
                return None
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            return proc
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return None

    @property
    def alive(self) -> bool:
        return self.process() is not None


class StateFile:
    """``<home>/stack.json``: the records of the running local stack, written atomically."""

    def __init__(self, home: Path) -> None:
        self.path = home / "stack.json"

    def read(self) -> dict[str, ProcessRecord]:
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            return {}  # a corrupt file is treated as stale: every record gets re-checked
        return {name: ProcessRecord(**rec) for name, rec in raw.get("services", {}).items()}

    def write(self, records: Mapping[str, ProcessRecord]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        data: dict[str, Any] = {"services": {n: asdict(r) for n, r in records.items()}}
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps(data, indent=2))
        os.replace(tmp, self.path)

    def put(self, record: ProcessRecord) -> None:
        records = self.read()
        records[record.service] = record
        self.write(records)

    def drop(self, service: str) -> None:
        records = self.read()
        if records.pop(service, None) is not None or not records:
            if records:
                self.write(records)
            else:
                self.path.unlink(missing_ok=True)


def port_in_use(host: str, port: int, timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def stop_process(proc: psutil.Process, sig: int = signal.SIGTERM, grace: float = 10.0) -> bool:
    """Signal, wait up to `grace` seconds, then SIGKILL. True if it had to be killed."""
    try:
        proc.send_signal(sig)
        proc.wait(timeout=grace)
        return False
    except psutil.NoSuchProcess:
        return False
    except psutil.TimeoutExpired:
        try:
            proc.kill()
            proc.wait(timeout=5)
        except psutil.NoSuchProcess:
            pass
        return True


def wait_until(check: Any, timeout: float, interval: float = 0.05) -> bool:
    """Call `check()` until it returns truthy or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])
