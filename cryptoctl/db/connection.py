"""PostgreSQL connections bound to the configured schema, and schema application."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptoctl.errors import ConfigError, DatabaseError, ServiceUnavailable
from cryptoctl.settings import Settings, redact

if TYPE_CHECKING:
    import psycopg

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def schema_ident(name: str) -> str:
    """A schema name checked to be a plain identifier (it is interpolated into search_path)."""
    if not _IDENT.fullmatch(name):
        raise ConfigError(f"invalid database schema name {name!r}: use letters, digits, _")
    return name


def db_address(settings: Settings) -> str:
    from psycopg.conninfo import conninfo_to_dict

    try:
        info = conninfo_to_dict(settings.database_url)
    except Exception:
        return redact(settings.database_url)
    return f"{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', '')}"


def connect(settings: Settings, *, autocommit: bool = False, timeout: int = 5) -> psycopg.Connection[Any]:
    """A connection whose search_path is the configured schema, or ServiceUnavailable."""
    import psycopg

    schema = schema_ident(settings.db_schema)
    try:
        return psycopg.connect(
            settings.database_url,
            autocommit=autocommit,
            connect_timeout=timeout,
            options=f"-c search_path={schema}",
            application_name="cryptoctl",
        )
    except psycopg.OperationalError as exc:
        raise ServiceUnavailable("PostgreSQL", db_address(settings), pg_reason(exc)) from None
    except psycopg.ProgrammingError as exc:
        raise ConfigError(f"invalid database URL {redact(settings.database_url)}: {exc}") from None


def pg_reason(exc: Exception) -> str:
    """The useful part of a libpq error: "Connection refused", "password authentication ..."."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if not lines:
        return "connection failed"
    first = lines[0]
    return redact(first.rsplit(" failed: ", 1)[1] if " failed: " in first else first)


# SQLSTATEs with a known remedy: the hint of the DatabaseError they become.
_HINTS = {
    "42P01": "create the tables with `cryptoctl db init` (schema {schema})",  # undefined_table
    "3F000": "create it with `cryptoctl db init`, or set --db-schema / CRYPTOCTL_DB_SCHEMA",
    "42501": "the database user lacks a privilege on it: grant it, or use another user",
}


def pg_error_detail(exc: Exception) -> str:
    """The server's primary message and SQLSTATE, one line, URLs without passwords."""
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) or pg_reason(exc)
    text = redact(" ".join(primary.split()))
    sqlstate = getattr(exc, "sqlstate", None)
    return f"{text} (SQLSTATE {sqlstate})" if sqlstate else text


def is_connection_loss(exc: BaseException) -> bool:
    """The connection failed or broke (the server went away, was shut down or restarted),
    as opposed to a statement the server refused."""
    import psycopg

    if isinstance(exc, psycopg.InterfaceError):
        return True
    if not isinstance(exc, psycopg.OperationalError):
        return False
    state = getattr(exc, "sqlstate", None)
    # None: libpq's own failure; 08: connection exception; 57P01-03: admin/crash
    # shutdown, cannot connect now.
    return state is None or state.startswith("08") or state in ("57P01", "57P02", "57P03")


@contextmanager
def database_errors(settings: Settings, doing: str) -> Iterator[None]:
    """psycopg errors as DatabaseError (or ServiceUnavailable when the connection broke)."""
    import psycopg

    try:
        yield
    except psycopg.Error as exc:
        address = db_address(settings)
        if is_connection_loss(exc):
            raise ServiceUnavailable("PostgreSQL", address, pg_reason(exc)) from None
        hint = _HINTS.get(exc.sqlstate or "")
        raise DatabaseError(
            address, doing, pg_error_detail(exc),
            hint=hint.format(schema=settings.db_schema) if hint else None,
        ) from None


@contextmanager
def session(settings: Settings, doing: str, *, autocommit: bool = False) -> Iterator[psycopg.Connection[Any]]:
    """A connection (see :func:`connect`) whose statement errors become one DatabaseError."""
    with database_errors(settings, doing), connect(settings, autocommit=autocommit) as conn:
        yield conn


def schema_sql() -> str:
    """schema.sql: packaged copy when installed, the repo root's in a source checkout."""
    packaged = resources.files("cryptoctl.db").joinpath("schema.sql")
    if packaged.is_file():
        return packaged.read_text()
    return (Path(__file__).resolve().parents[2] / "schema.sql").read_text()


def apply_schema(settings: Settings) -> None:
    """Create the schema (if not public) and apply schema.sql; idempotent."""
    schema = schema_ident(settings.db_schema)
    with session(settings, f"applying schema.sql to schema {schema}", autocommit=True) as conn:
        conn.execute("SET client_min_messages = warning")
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        conn.execute(schema_sql().encode())  # a trusted file shipped with the package


def timescale_schema(conn: psycopg.Connection[Any]) -> str | None:
    """The schema TimescaleDB's functions live in, or None without the extension.

    Not necessarily on cryptoctl's search_path (that is cryptoctl's schema only), so its
    functions are called qualified by it.
    """
    row = conn.execute(
        "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace"
        " WHERE e.extname = 'timescaledb'"
    ).fetchone()
    return str(row[0]) if row else None


def timescale_available(conn: psycopg.Connection[Any]) -> bool:
    return timescale_schema(conn) is not None
