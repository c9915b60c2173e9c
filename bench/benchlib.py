"""What the benches share: free ports, a throw-away local stack, the environment of a
cryptoctl subprocess, percentiles and a description of the machine.

Imported by the bench scripts as a sibling module (``from benchlib import ...``): Python
puts a script's own directory first on ``sys.path``.
"""

from __future__ import annotations

import os
import platform
import shutil
import signal
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from cryptoctl.settings import Settings, load_settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def local_settings(home: Path, **extra: Any) -> Settings:
    """Settings for a local stack in ``home`` on free ports (never the user's own stack)."""
    return load_settings({
        "home": home, "kafka_bootstrap": f"127.0.0.1:{free_port()}",
        "database_url": f"postgresql://cryptoctl:cryptoctl@127.0.0.1:{free_port()}/cryptoctl",
        "redis_url": f"redis://127.0.0.1:{free_port()}/0", **extra,
    }, environ={})  # fmt: skip


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextmanager
def local_stack(prefix: str, **extra: Any) -> Iterator[Settings]:
    """A fresh local stack (temporary state dir, free ports), stopped and deleted at the end:
    also on an error, Ctrl-C or SIGTERM (turned into KeyboardInterrupt while it runs)."""
    from cryptoctl.stack import local

    previous = signal.signal(signal.SIGTERM, _interrupt)
    home = Path(tempfile.mkdtemp(prefix=prefix))
    settings = local_settings(home, **extra)
    try:
        local.up(settings)
        yield settings
    finally:
        try:
            local.down(settings, purge=True)
        finally:
            shutil.rmtree(home, ignore_errors=True)
            signal.signal(signal.SIGTERM, previous)


def cryptoctl_env(s: Settings) -> dict[str, str]:
    """The environment of a cryptoctl subprocess pointed at these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRYPTOCTL_")}
    return env | {
        "CRYPTOCTL_KAFKA_BOOTSTRAP": s.kafka_bootstrap, "CRYPTOCTL_DATABASE_URL": s.database_url,
        "CRYPTOCTL_DB_SCHEMA": s.db_schema, "CRYPTOCTL_REDIS_URL": s.redis_url,
        "CRYPTOCTL_REDIS_PREFIX": s.redis_prefix, "CRYPTOCTL_TOPIC": s.topic,
        "CRYPTOCTL_GROUP": s.group, "CRYPTOCTL_HOME": str(s.home),
    }


def percentile(sorted_values: list[float], q: float) -> float:
    """The q-quantile (0 < q <= 1) of already sorted values: the value below which
    int(n * q) of the n values lie."""
    return sorted_values[max(0, int(len(sorted_values) * q) - 1)]


def machine() -> str:
    return (f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()} "
            f"{platform.release()}, Python {platform.python_version()}")  # fmt: skip


def claimed_partitions(settings: Settings) -> int:
    """Partitions of the settings' schema that an aggregator has claimed."""
    from cryptoctl.db.connection import connect

    with connect(settings) as conn:
        row = conn.execute("SELECT count(*) FROM processing_metadata").fetchone()
    return int(row[0]) if row else 0
