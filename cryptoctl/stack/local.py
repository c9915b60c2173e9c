"""The local runtime: `up`, `down` and the process side of `status`.

`up` starts the servers that are not running, waits until each answers, then creates the
topics and applies schema.sql. It never leaves a half-started stack: when one server
fails, the ones this call started are stopped again.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from cryptoctl.endpoints import by_service
from cryptoctl.errors import StackError
from cryptoctl.settings import Settings
from cryptoctl.stack.processes import (
    ProcessRecord,
    StateFile,
    log_tail,
    port_in_use,
    stop_process,
    wait_until,
)
from cryptoctl.stack.provision import provision
from cryptoctl.stack.services import KafkaService, Service, all_services

START_TIMEOUT_S = 60.0
STOP_GRACE_S = 10.0

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@dataclass(frozen=True)
class ServiceOutcome:
    service: str
    label: str
    address: str
    pid: int
    action: str  # "started" | "already running"
    seconds: float = 0.0
    note: str = ""


@dataclass(frozen=True)
class UpResult:
    services: list[ServiceOutcome]
    topics_created: list[str] = field(default_factory=list)
    home: Path = Path()
    seconds: float = 0.0


@dataclass(frozen=True)
class DownOutcome:
    service: str
    label: str
    action: str  # "stopped" | "killed" | "not running" | "stale record removed"
    pid: int | None = None


def prepare_home(home: Path) -> None:
    """The state dir, private to its owner: logs, stack.json and the data live here.

    0711, not 0700: the unprivileged PostgreSQL user must traverse it to its own data dir
    (which is 0700 and its own); nobody else can list or read anything in it.
    """
    try:
        home.mkdir(parents=True, exist_ok=True)
        home.chmod(0o711)
        logs = home / "logs"
        logs.mkdir(exist_ok=True)
        logs.chmod(0o700)
        # A probe of its own: two `up` at once must not unlink each other's.
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=home)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise StackError(
            f"the state directory {home} is not usable: {exc.strerror or exc}",
            hint="set CRYPTOCTL_HOME to a directory you can write to",
        ) from None


@contextlib.contextmanager
def stack_lock(home: Path) -> Iterator[None]:
    """One `up` or `down` at a time per state dir: a second one waits for the first."""
    prepare_home(home)
    fd = os.open(home / ".lock", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def up(settings: Settings, progress: Progress = _quiet) -> UpResult:
    """Start whatever is not running, wait for health, create topics, apply the schema.

    Two `up` at once on one state dir are serialised: the second finds the first's
    servers running (instead of racing it for the ports and telling the user to stop them).
    """
    with stack_lock(settings.home):
        return _up(settings, progress)


def _up(settings: Settings, progress: Progress) -> UpResult:
    t0 = time.monotonic()
    state = StateFile(settings.home)
    started: list[tuple[Service, ProcessRecord]] = []
    outcomes: list[ServiceOutcome] = []
    try:
        for service in all_services(settings):
            outcome, record = _ensure_running(service, state, progress)
            outcomes.append(outcome)
            if outcome.action == "started":
                started.append((service, record))
    except BaseException:
        for service, record in reversed(started):
            _stop(service, record, state)
        raise
    topics = provision(settings, progress)
    return UpResult(outcomes, topics, settings.home, time.monotonic() - t0)


def _ensure_running(
    service: Service, state: StateFile, progress: Progress
) -> tuple[ServiceOutcome, ProcessRecord]:
    record = state.read().get(service.name)
    note = ""
    if record is not None:
        if record.alive:
            if not wait_until(service.ready, 10.0):
                raise StackError(
                    f"{service.label} (PID {record.pid}) is running but does not answer at "
                    f"{service.address}",
                    hint=f"see {service.log_path()}, or restart with `cryptoctl down` then `up`",
                )
            return ServiceOutcome(
                service.name, service.label, service.address, record.pid, "already running"
            ), record
        state.drop(service.name)
        note = f"removed stale PID file (PID {record.pid} is gone)"
    host, port = service.bind_host, service.endpoint[1]
    if port_in_use(host, port):
        raise StackError(
            f"port {port} for {service.label} is already taken by a process cryptoctl did not "
            "start",
            hint=f"stop that process, or choose another port in {_setting_for(service)}",
        )
    progress(f"starting {service.label} on {service.address}")
    record, seconds = _start(service, state)
    return ServiceOutcome(
        service.name, service.label, service.address, record.pid, "started", seconds, note
    ), record


def _setting_for(service: Service) -> str:
    endpoint = by_service(service.name)
    return endpoint.env[0] if endpoint else service.name


def _start(service: Service, state: StateFile) -> tuple[ProcessRecord, float]:
    t0 = time.monotonic()
    service.prepare()
    log_path = service.log_path()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "ab") as log:
        proc = service.start(log)
    record = ProcessRecord(
        service=service.name,
        pid=proc.pid,
        create_time=psutil.Process(proc.pid).create_time(),
        host=service.bind_host,
        port=service.endpoint[1],
        started_at=time.time(),
        cluster_id=getattr(service, "cluster_id", ""),
    )
    state.put(record)

    def answered() -> bool:
        return proc.poll() is not None or service.ready()

    healthy = wait_until(answered, START_TIMEOUT_S) and proc.poll() is None
    if not healthy:
        code = proc.poll()
        _stop(service, record, state)
        what = f"exited with code {code}" if code is not None else f"did not answer in {START_TIMEOUT_S:.0f}s"
        tail = log_tail(log_path)
        raise StackError(
            f"{service.label} {what} while starting on {service.address}"
            + (f"; last lines of {log_path}:\n{tail}" if tail else ""),
            hint="check the log above; `cryptoctl down` cleans up",
        )
    service.after_start()
    record = ProcessRecord(**{**record.__dict__, "version": _safe_version(service)})
    state.put(record)
    return record, time.monotonic() - t0


def _safe_version(service: Service) -> str:
    try:
        return service.version()
    except Exception:
        return ""


def _stop(service: Service, record: ProcessRecord, state: StateFile) -> str:
    proc = record.process()
    action = "not running"
    if proc is not None:
        killed = stop_process(proc, service.stop_signal, STOP_GRACE_S)
        action = "killed" if killed else "stopped"
    state.drop(service.name)
    return action


def down(settings: Settings, purge: bool = False, progress: Progress = _quiet) -> list[DownOutcome]:
    """Stop exactly the processes `up` started (by PID); `purge` also deletes their data."""
    if not settings.home.is_dir():
        return [DownOutcome(s.name, s.label, "not running") for s in reversed(all_services(settings))]
    with stack_lock(settings.home):
        return _down(settings, purge, progress)


def _down(settings: Settings, purge: bool, progress: Progress) -> list[DownOutcome]:
    state = StateFile(settings.home)
    records = state.read()
    outcomes = []
    for service in reversed(all_services(settings)):
        record = records.get(service.name)
        if record is None:
            outcomes.append(DownOutcome(service.name, service.label, "not running"))
            continue
        if not record.alive:
            state.drop(service.name)
            outcomes.append(
                DownOutcome(service.name, service.label, "stale record removed", record.pid)
            )
            continue
        progress(f"stopping {service.label} (PID {record.pid})")
        outcomes.append(
            DownOutcome(service.name, service.label, _stop(service, record, state), record.pid)
        )
    if purge:
        for service in all_services(settings):
            shutil.rmtree(service.data_dir(), ignore_errors=True)
        shutil.rmtree(settings.home / "logs", ignore_errors=True)
        state.path.unlink(missing_ok=True)
    return outcomes


def _service(settings: Settings, name: str) -> Service:
    by_name = {s.name: s for s in all_services(settings)}
    if name not in by_name:
        raise StackError(f"unknown service {name!r}: choose from {', '.join(by_name)}")
    return by_name[name]


def stop_service(settings: Settings, name: str) -> str:
    """Stop one service of the local stack (its data is kept)."""
    service = _service(settings, name)
    state = StateFile(settings.home)
    record = state.read().get(name)
    return _stop(service, record, state) if record else "not running"


def start_service(settings: Settings, name: str) -> ServiceOutcome:
    """Start one service of the local stack if it is not running (no topics, no schema)."""
    outcome, _ = _ensure_running(_service(settings, name), StateFile(settings.home), _quiet)
    return outcome


def running_records(settings: Settings) -> dict[str, ProcessRecord]:
    """The live processes of the local stack (stale records left out)."""
    return {n: r for n, r in StateFile(settings.home).read().items() if r.alive}


def broker_cluster_id(settings: Settings) -> str | None:
    """The cluster id the local broker was started with, if it is ours and running."""
    record = running_records(settings).get(KafkaService.name)
    return record.cluster_id if record else None
