"""Test fixtures: one real local stack per test session, isolated names per test.

The stack (Tansu broker, PostgreSQL, Redis) runs on free ports in a temporary state dir,
so a developer's own running stack is never touched. A service that cannot start fails
the run: nothing is skipped for it.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import hypothesis
import pytest
from typer.testing import CliRunner

from cryptoctl.settings import Settings, load_settings
from tests.helpers import stack_env

# No per-example deadline: the suite runs beside busy services on two cores, where a
# 200 ms deadline fails correct code. Examples are still bounded by max_examples.
hypothesis.settings.register_profile("cryptoctl", deadline=None)
hypothesis.settings.load_profile("cryptoctl")


@contextmanager
def state_home() -> Iterator[Path]:
    """A state dir for a local stack, outside pytest's temp root.

    pytest resets ``/tmp/pytest-of-<user>`` to mode 0700 whenever a session starts; under
    root the unprivileged PostgreSQL user would then lose its way to its data dir if
    another pytest session started next to this one.
    """
    path = Path(tempfile.mkdtemp(prefix="cryptoctl-test-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class StackHandle:
    """The session's local stack, with controls for failure tests."""

    settings: Settings

    def stop(self, service: str) -> None:
        from cryptoctl.stack.local import stop_service

        stop_service(self.settings, service)

    def start(self, service: str) -> None:
        from cryptoctl.stack.local import start_service

        start_service(self.settings, service)

    def restart_postgres(self) -> None:
        self.stop("postgres")
        self.start("postgres")

    def stop_redis(self) -> None:
        self.stop("redis")

    def start_redis(self) -> None:
        self.start("redis")

    def restart_kafka(self) -> None:
        """The memory-only broker comes back empty, with a new cluster id."""
        self.stop("kafka")
        self.start("kafka")


@pytest.fixture(scope="session", autouse=True)
def _isolated_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No user configuration or CRYPTOCTL_* variable leaks into the tests."""
    mp = pytest.MonkeyPatch()
    for key in list(os.environ):
        if key.startswith("CRYPTOCTL_") or key in {"DATABASE_URL", "COINGECKO_API_KEY"}:
            mp.delenv(key)
    mp.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("xdg-config")))
    yield
    mp.undo()


@pytest.fixture(scope="session")
def stack() -> Iterator[StackHandle]:
    with state_home() as home:
        yield from _session_stack(home)


def _session_stack(home: Path) -> Iterator[StackHandle]:
    from cryptoctl.stack.local import down, up

    base = load_settings(
        {
            "home": home,
            "kafka_bootstrap": f"127.0.0.1:{free_port()}",
            "database_url": f"postgresql://cryptoctl:cryptoctl@127.0.0.1:{free_port()}/cryptoctl",
            "redis_url": f"redis://127.0.0.1:{free_port()}/0",
        },
        environ={},
    )
    try:
        up(base)
    except BaseException:
        down(base, purge=True)
        raise
    try:
        yield StackHandle(base)
    finally:
        down(base, purge=True)


def _names() -> dict[str, Any]:
    tag = uuid.uuid4().hex[:10]
    return {
        "topic": f"t-{tag}",
        "group": f"g-{tag}",
        "db_schema": f"t_{tag}",
        "redis_prefix": f"t:{tag}:",
    }


def make_settings(stack: StackHandle, **overrides: Any) -> Settings:
    """Fresh per-test names on the session stack: topic (+DLQ) created, schema applied."""
    from cryptoctl.db.connection import apply_schema
    from cryptoctl.kafka.clients import ensure_topics

    settings = replace(stack.settings, **(_names() | overrides))
    ensure_topics(settings)
    apply_schema(settings)
    return settings


@pytest.fixture
def settings(stack: StackHandle, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Settings of this test; the CRYPTOCTL_* environment points at the same names."""
    from cryptoctl.db.connection import connect

    test_settings = make_settings(stack)
    for key, value in stack_env(test_settings).items():
        if key.startswith("CRYPTOCTL_"):
            monkeypatch.setenv(key, value)
    yield test_settings
    with connect(test_settings, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{test_settings.db_schema}" CASCADE')


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str
    exception: BaseException | None


@pytest.fixture
def cli() -> Any:
    """Run `cryptoctl ARGS...` in-process; stdout and stderr are kept apart."""
    from cryptoctl.cli.app import app

    def invoke(*args: str, input: str | None = None) -> CliResult:
        result = CliRunner().invoke(app, list(args), input=input, catch_exceptions=True)
        exc = result.exception if not isinstance(result.exception, SystemExit) else None
        return CliResult(result.exit_code, result.stdout, result.stderr, exc)

    return invoke
