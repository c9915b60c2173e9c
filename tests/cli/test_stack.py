"""CLI tests for up/down/status/db init/config: exit codes, stdout/stderr split, JSON shape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cryptoctl.errors import ExitCode
from cryptoctl.settings import Settings
from tests.conftest import free_port, state_home


def test_help_lists_every_command_and_is_fast_to_import(cli) -> None:
    result = cli("--help")
    assert result.exit_code == 0
    for name in ("up", "down", "status", "db", "config"):
        assert name in result.stdout


def test_status_json_on_a_running_stack(cli, settings: Settings) -> None:
    result = cli("status", "--format", "json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["all_up"] is True
    assert [s["name"] for s in data["services"]] == ["kafka", "postgres", "redis"]
    for service in data["services"]:
        assert service["up"] is True and service["rtt_ms"] >= 0 and service["version"]
        assert service["pid"] is not None  # started by the local runtime
    topics = {t["name"]: t["partitions"] for t in data["topics"]}
    assert topics[settings.topic] == 6 and topics[settings.dlq] == 1
    assert {t["name"] for t in data["tables"]} >= {"price_aggregates_1m", "processing_metadata"}
    assert result.stderr == ""


def test_status_table_goes_to_stdout(cli, settings: Settings) -> None:
    result = cli("status")
    assert result.exit_code == 0
    assert "PostgreSQL" in result.stdout and "services" in result.stdout
    assert settings.topic in result.stdout


@pytest.mark.parametrize("columns", [80, 120])
def test_status_table_fits_the_terminal(cli, settings: Settings, monkeypatch, columns: int) -> None:
    monkeypatch.setenv("COLUMNS", str(columns))
    result = cli("status")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(len(line.rstrip()) for line in lines) <= columns
    redis_address = settings.redis_url.removeprefix("redis://")
    for label in ("Kafka", "PostgreSQL", "Redis"):  # one line each: nothing wraps
        row = next(line for line in lines if line.startswith(label + " "))
        assert " up " in row, row
        following = lines[lines.index(row) + 1]
        assert following.startswith(("PostgreSQL", "Redis", "Kafka cluster")), following
    assert redis_address in result.stdout and settings.kafka_bootstrap in result.stdout
    assert ("PID" in result.stdout) == (columns >= 100)


def test_status_when_one_service_is_down(cli, settings: Settings, monkeypatch) -> None:
    monkeypatch.setenv("CRYPTOCTL_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    result = cli("status", "--format", "json")
    assert result.exit_code == ExitCode.SERVICE_UNAVAILABLE
    data = json.loads(result.stdout)
    state = {s["name"]: s["up"] for s in data["services"]}
    assert state == {"kafka": True, "postgres": True, "redis": False}
    redis = data["services"][2]
    assert redis["detail"] == "Connection refused"
    assert result.stderr.splitlines() == [
        f"error: Redis is not reachable at {redis['address']}: Connection refused — start the "
        "local stack with `cryptoctl up`, or set --redis-url / CRYPTOCTL_REDIS_URL to yours"
    ]


def test_db_init_is_idempotent(cli, settings: Settings) -> None:
    for _ in range(2):
        result = cli("db", "init")
        assert result.exit_code == 0, result.stderr
        assert f"schema {settings.db_schema}" in result.stderr
        assert result.stdout == ""


def test_db_init_unreachable_names_service_address_and_fix(cli, monkeypatch) -> None:
    port = free_port()
    monkeypatch.setenv("CRYPTOCTL_DATABASE_URL", f"postgresql://u:topsecret@127.0.0.1:{port}/db")
    result = cli("db", "init")
    assert result.exit_code == ExitCode.SERVICE_UNAVAILABLE
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1
    assert f"PostgreSQL is not reachable at 127.0.0.1:{port}/db" in line
    assert "cryptoctl up" in line
    assert "topsecret" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_config_masks_passwords_and_shows_origins(cli, monkeypatch, tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('group = "from-file"\n')
    monkeypatch.setenv("CRYPTOCTL_DATABASE_URL", "postgresql://me:hunter2@db.internal:5432/x")
    result = cli("--config", str(cfg), "config", "--format", "json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["database_url"] == "postgresql://me:***@db.internal:5432/x"
    assert data["group"] == "from-file"
    table = cli("--config", str(cfg), "--kafka", "k:1", "config")
    assert "hunter2" not in table.stdout
    assert "from-file" in table.stdout and "flag" in table.stdout


def test_bad_config_file_exits_2(cli, tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("colour = 'red'\n")
    result = cli("--config", str(cfg), "config")
    assert result.exit_code == ExitCode.USAGE
    assert "unknown setting 'colour'" in result.stderr


def test_bad_flag_exits_2_with_a_hint(cli) -> None:
    result = cli("status", "--format", "xml")
    assert result.exit_code == ExitCode.USAGE
    assert "xml" in result.stderr and "--format" in result.stderr


def test_up_and_down_through_the_cli(cli, monkeypatch) -> None:
    with state_home() as home:
        _up_and_down(cli, monkeypatch, home)


def _up_and_down(cli, monkeypatch, home: Path) -> None:
    monkeypatch.setenv("CRYPTOCTL_HOME", str(home / "home"))
    monkeypatch.setenv("CRYPTOCTL_KAFKA_BOOTSTRAP", f"127.0.0.1:{free_port()}")
    monkeypatch.setenv(
        "CRYPTOCTL_DATABASE_URL", f"postgresql://cryptoctl:cryptoctl@127.0.0.1:{free_port()}/c")
    monkeypatch.setenv("CRYPTOCTL_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    try:
        first = cli("up")
        assert first.exit_code == 0, first.stderr
        assert first.stderr.count("started in") == 3 and "schema applied" in first.stderr
        assert first.stdout == ""
        again = cli("up")
        assert again.exit_code == 0 and again.stderr.count("already running") == 3
        status = cli("status", "--format", "json")
        assert json.loads(status.stdout)["all_up"] is True
    finally:
        down = cli("down", "--purge")
    assert down.exit_code == 0, down.stderr
    assert down.stderr.count("stopped") == 3 and "deleted" in down.stderr
    assert cli("status").exit_code == ExitCode.SERVICE_UNAVAILABLE


def test_up_docker_without_docker_exits_4_with_the_local_alternative(
    cli, monkeypatch, tmp_path: Path
) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    result = cli("up", "--docker")
    assert result.exit_code == ExitCode.STACK
    assert "the docker command is not installed" in result.stderr
    assert "cryptoctl up" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_an_unexpected_error_is_one_line_without_secrets(cli, monkeypatch) -> None:
    import cryptoctl.settings

    def broken(*_args, **_kwargs):
        raise RuntimeError("boom at postgresql://me:hunter2@db:5432/x")

    monkeypatch.setattr(cryptoctl.settings, "display_settings", broken)
    result = cli("config")
    assert result.exit_code == ExitCode.ERROR
    assert result.stderr.strip().splitlines() == [
        "error: internal error: RuntimeError: boom at postgresql://me:***@db:5432/x — this is a "
        "bug; CRYPTOCTL_DEBUG=1 shows the traceback"
    ]
    monkeypatch.setenv("CRYPTOCTL_DEBUG", "1")
    assert isinstance(cli("config").exception, RuntimeError)


def test_status_shows_the_feed_gaps_recorded(cli, settings: Settings, monkeypatch) -> None:
    from cryptoctl.db.connection import connect

    with connect(settings) as conn:
        for i in range(12):
            conn.execute(
                "INSERT INTO feed_gaps (source, symbol, quote, first_trade_id, last_trade_id,"
                " after_time, before_time, reason) VALUES ('binance', 'BTC', 'USDT', %s, %s,"
                " '2026-01-01T00:00:00Z'::timestamptz + make_interval(mins => %s),"
                " '2026-01-01T00:00:05Z'::timestamptz + make_interval(mins => %s),"
                " 'not in the exchange''s REST history')",
                (100 * i + 1, 100 * i + 7, i, i),
            )
        conn.commit()
    data = json.loads(cli("status", "--format", "json").stdout)
    assert data["gaps_total"] == 12 and len(data["gaps"]) == 10
    assert data["gaps"][0] == {
        "market": "binance BTC/USDT", "first_id": 1101, "last_id": 1107,
        "after": "2026-01-01T00:11:00Z", "before": "2026-01-01T00:11:05Z",
        "reason": "not in the exchange's REST history",
    }
    monkeypatch.setenv("COLUMNS", "80")
    text = cli("status").stdout
    assert "feed gaps" in text and "newest 10 of 12" in text
    row = next(line for line in text.splitlines() if line.startswith("binance BTC/USDT"))
    assert "1101-1107" in row and "01-01 00:11:00 - 00:11:05" in row
    assert max(len(line.rstrip()) for line in text.splitlines()) <= 80
