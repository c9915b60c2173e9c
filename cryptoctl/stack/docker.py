"""The docker runtime: ``compose/docker-compose.yml`` driven by ``docker compose``.

``cryptoctl up --docker`` / ``down --docker`` call :func:`docker_up` / :func:`docker_down`.
Both check first that Docker Compose exists and that a Docker engine answers, and raise
:class:`StackError` with a one-line reason and a pointer to the local runtime when not.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from cryptoctl.endpoints import SERVICES
from cryptoctl.errors import StackError
from cryptoctl.settings import Settings, redact

PROJECT = "cryptoctl"
COMPOSE_FILE_NAME = "docker-compose.yml"
SCHEMA_ENV = "CRYPTOCTL_SCHEMA_SQL"  # the compose file mounts this path as the init script
PROFILES = ("tools",)  # profiles `down` includes, so pgAdmin started by hand is removed too
INFO_TIMEOUT = 5.0  # `docker info` hangs for long on an unreachable remote DOCKER_HOST
VERSION_TIMEOUT = 10.0
DOWN_TIMEOUT = 180.0
LOCAL_HINT = "use the local runtime instead: cryptoctl up"
DEFAULT_ENGINE = "unix:///var/run/docker.sock"
# Endpoints the compose file publishes (tests/stack/test_compose.py holds the file to these).
PUBLISHED = {e.service: e.default for e in SERVICES} | {"Kafka UI": "http://localhost:8080"}


@dataclass(frozen=True)
class Compose:
    """How to run compose on our file: the command prefix and the file."""

    command: tuple[str, ...]  # ("docker", "compose") or ("docker-compose",)
    file: Path

    def args(self, *sub: str) -> list[str]:
        return [*self.command, "--ansi", "never", "-f", str(self.file), "-p", PROJECT, *sub]


def compose_file() -> Path:
    """The compose file: the packaged copy when installed, the repo's in a source checkout."""
    packaged = resources.files("cryptoctl.stack").joinpath(COMPOSE_FILE_NAME)
    if isinstance(packaged, Path) and packaged.is_file():
        return packaged
    repo = Path(__file__).resolve().parents[2] / "compose" / COMPOSE_FILE_NAME
    if repo.is_file():
        return repo
    raise StackError(
        f"compose file {COMPOSE_FILE_NAME} not found in the package or at {repo}",
        hint="reinstall cryptoctl, or run compose from a source checkout",
    )


def schema_file() -> Path | None:
    """schema.sql to mount into the database container (packaged copy or the repo's)."""
    packaged = resources.files("cryptoctl.db").joinpath("schema.sql")
    if isinstance(packaged, Path) and packaged.is_file():
        return packaged
    repo = Path(__file__).resolve().parents[2] / "schema.sql"
    return repo if repo.is_file() else None


def _run(args: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str] | None:
    """Run a short command; None when it cannot be started or does not finish in time."""
    try:
        return subprocess.run(
            list(args), capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None


def _compose_command() -> tuple[str, ...] | None:
    """`docker compose` (plugin) when it works, else a standalone `docker-compose` v2."""
    if shutil.which("docker"):
        done = _run(["docker", "compose", "version"], VERSION_TIMEOUT)
        if done is not None and done.returncode == 0:
            return ("docker", "compose")
    if shutil.which("docker-compose"):
        done = _run(["docker-compose", "version", "--short"], VERSION_TIMEOUT)
        # Compose v1 has no `up --wait`; its version starts with "1.".
        if done is not None and done.returncode == 0 and not done.stdout.strip().startswith("1."):
            return ("docker-compose",)
    return None


def engine_address() -> str:
    """The engine the docker CLI talks to, for messages (never carries a password)."""
    return redact(os.environ.get("DOCKER_HOST") or DEFAULT_ENGINE)


def _engine_problem() -> str | None:
    done = _run(["docker", "info", "--format", "{{.ServerVersion}}"], INFO_TIMEOUT)
    if done is not None and done.returncode == 0 and done.stdout.strip():
        return None
    # The CLI names the address it tried ("Cannot connect to the Docker daemon at X. ...").
    said = re.search(r"daemon at (\S+?)\.?(\s|$)", done.stderr if done else "")
    address = redact(said.group(1)) if said else engine_address()
    why = "timed out" if done is None else "not answering"
    return f"no Docker engine reachable at {address} ({why})"


def _probe() -> tuple[tuple[str, ...] | None, str | None]:
    """(compose command, None) when usable, else (None, the reason it is not)."""
    if not shutil.which("docker"):
        return None, "the docker command is not installed"
    command = _compose_command()
    if command is None:
        return None, (
            "Docker Compose v2 is not installed (neither `docker compose` nor `docker-compose`)"
        )
    problem = _engine_problem()
    return (None, problem) if problem else (command, None)


def docker_available() -> str | None:
    """None when compose and an engine are usable, else the reason they are not."""
    return _probe()[1]


def _require_compose(hint: str = LOCAL_HINT) -> Compose:
    command, reason = _probe()
    if command is None:
        raise StackError(reason or "Docker Compose is not usable", hint=hint)
    return Compose(command=command, file=compose_file())


def _compose_env() -> dict[str, str]:
    env = dict(os.environ)
    schema = schema_file()
    if schema is not None:
        env.setdefault(SCHEMA_ENV, str(schema))
    return env


def _last_line(lines: Sequence[str]) -> str:
    for line in reversed(lines):
        if line.strip():
            return line.strip()
    return "no output"


def _stream(args: list[str], on_line: Callable[[str], None]) -> tuple[int, list[str]]:
    """Run compose, passing each output line on as it comes; (exit code, last lines)."""
    tail: deque[str] = deque(maxlen=20)
    try:
        proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env=_compose_env(),
        )
    except OSError as exc:
        raise StackError(f"cannot run {args[0]}: {exc.strerror}", hint=LOCAL_HINT) from None
    assert proc.stdout is not None
    with proc:
        for raw in proc.stdout:
            line = raw.strip()
            if line:
                tail.append(line)
                on_line(line)
    return proc.returncode, list(tail)


def _endpoint_notes(settings: Settings) -> list[str]:
    """Which configured endpoints do not point at what the compose stack publishes."""
    configured = {
        "Kafka": settings.kafka_bootstrap,
        "PostgreSQL": settings.database_url,
        "Redis": settings.redis_url,
    }
    return [
        f"note: {name} is configured as {redact(value)}, the docker stack publishes "
        f"{redact(PUBLISHED[name])}"
        for name, value in configured.items()
        if value != PUBLISHED[name]
    ]


def docker_up(
    settings: Settings, on_progress: Callable[[str], None], profiles: Sequence[str] = ()
) -> list[str]:
    """Start the compose stack and wait until every service is healthy (idempotent);
    ``profiles`` adds the services of those compose profiles (``tools``: Prometheus,
    Grafana, pgAdmin).

    Returns notes worth showing after the progress display (endpoints that do not point at
    the docker stack). Topics and schema for non-default settings: ``stack.provision``."""
    compose = _require_compose()
    on_progress(f"starting the docker stack from {compose.file}")
    # --profile is a global option: it goes before the subcommand.
    chosen = [arg for p in profiles for arg in ("--profile", p)]
    code, tail = _stream(compose.args(*chosen, "up", "-d", "--wait"), on_progress)
    if code != 0:
        raise StackError(
            f"docker compose up failed (exit {code}): {_last_line(tail)}",
            hint=f"see `docker compose -p {PROJECT} logs`, or use the local runtime: cryptoctl up",
        )
    for name, address in PUBLISHED.items():
        on_progress(f"{name} at {redact(address)}")
    return _endpoint_notes(settings)


def docker_down(settings: Settings, purge: bool) -> None:
    """Stop and remove the compose stack's containers; ``purge`` also deletes its volumes."""
    compose = _require_compose(hint="the local stack stops with: cryptoctl down")
    profiles = [arg for p in PROFILES for arg in ("--profile", p)]
    # --profile is a global option: it goes before the subcommand.
    args = compose.args(*profiles, "down", "--remove-orphans", *(["-v"] if purge else []))
    done = _run(args, DOWN_TIMEOUT)
    if done is None:
        raise StackError(f"docker compose down did not finish in {DOWN_TIMEOUT:.0f} s")
    if done.returncode != 0:
        detail = _last_line((done.stderr or done.stdout).splitlines())
        raise StackError(f"docker compose down failed (exit {done.returncode}): {detail}")
