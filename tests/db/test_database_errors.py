"""A statement PostgreSQL refuses is one line naming the database, with exit code 6."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import psycopg
import pytest

from cryptoctl.db import connection
from cryptoctl.db.connection import connect, db_address
from cryptoctl.errors import DatabaseError, ExitCode
from cryptoctl.settings import Settings


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def test_candles_from_a_dropped_table(cli: Any, settings: Settings) -> None:
    with connect(settings, autocommit=True) as conn:
        conn.execute("DROP TABLE price_aggregates_1m CASCADE")
    result = cli("candles", "--since", "2026-11-01T00:00:00Z", "--until", "2026-11-01T01:00:00Z")
    assert result.exit_code == ExitCode.DATABASE == 6, result.stderr
    line = one_line(result.stderr)
    assert line == (
        f"error: PostgreSQL at {db_address(settings)}: reading candles failed: relation "
        '"price_aggregates_1m" does not exist (SQLSTATE 42P01) — create the tables with '
        f"`cryptoctl db init` (schema {settings.db_schema})"
    )
    assert "internal error" not in line and ":cryptoctl@" not in line  # no password
    assert result.stdout == ""


def test_db_init_with_a_failing_schema(
    cli: Any, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connection, "schema_sql", lambda: "CREATE TABLE broken (x no_such_type);")
    result = cli("db", "init")
    assert result.exit_code == ExitCode.DATABASE, result.stderr
    assert one_line(result.stderr) == (
        f"error: PostgreSQL at {db_address(settings)}: applying schema.sql to schema "
        f'{settings.db_schema} failed: type "no_such_type" does not exist (SQLSTATE 42704)'
    )


def test_message_names_the_database_but_never_the_password(settings: Settings) -> None:
    secret = settings.database_url.replace("cryptoctl:cryptoctl@", "cryptoctl:s3cret-pw@")
    assert secret != settings.database_url
    bad = replace(settings, database_url=secret)
    with pytest.raises(DatabaseError) as err, connection.database_errors(bad, "testing"):
        raise psycopg.errors.SyntaxError(f"syntax error near {secret}")
    assert err.value.exit_code == ExitCode.DATABASE
    assert "s3cret-pw" not in str(err.value)
    assert str(err.value).startswith(f"PostgreSQL at {db_address(bad)}: testing failed: syntax error")


def test_a_connection_lost_mid_query_is_unreachable_not_a_database_error() -> None:
    """A server shut down or restarted under a query (57P01-03, class 08) is exit 3, like
    a refused connection; a statement the server refuses is exit 6."""
    import psycopg
    import pytest as _pytest

    from cryptoctl.db.connection import database_errors, is_connection_loss
    from cryptoctl.errors import DatabaseError, ServiceUnavailable
    from cryptoctl.settings import load_settings

    lost = [psycopg.OperationalError("server closed the connection"),
            psycopg.errors.AdminShutdown("terminating connection"),
            psycopg.errors.CrashShutdown("crash"), psycopg.errors.CannotConnectNow("starting"),
            psycopg.errors.ConnectionFailure("gone"), psycopg.InterfaceError("closed")]
    refused = [psycopg.errors.UndefinedTable("no table"), psycopg.errors.DiskFull("full"),
               psycopg.errors.SerializationFailure("retry")]
    assert all(is_connection_loss(e) for e in lost)
    assert not any(is_connection_loss(e) for e in refused)
    settings = load_settings(environ={})
    for exc in lost:
        with _pytest.raises(ServiceUnavailable), database_errors(settings, "reading"):
            raise exc
    for exc in refused:
        with _pytest.raises(DatabaseError), database_errors(settings, "reading"):
            raise exc
