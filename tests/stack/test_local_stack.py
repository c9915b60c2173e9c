"""The local runtime's lifecycle, each test on a stack of its own (own ports and state dir)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from cryptoctl.errors import ConfigError, ExitCode, StackError
from cryptoctl.settings import Settings, load_settings
from cryptoctl.stack import local
from cryptoctl.stack.processes import StateFile
from tests.conftest import free_port, state_home


@pytest.fixture
def own() -> Iterator[Settings]:
    with state_home() as home:
        yield from _own_stack(home)


def _own_stack(home: Path) -> Iterator[Settings]:
    settings = load_settings(
        {
            "home": home / "home",
            "kafka_bootstrap": f"localhost:{free_port()}",
            "database_url": f"postgresql://cryptoctl:pw@localhost:{free_port()}/market",
            "redis_url": f"redis://localhost:{free_port()}/0",
        },
        environ={},
    )
    yield settings
    local.down(settings, purge=True)


def _pids(settings: Settings) -> dict[str, int]:
    return {name: rec.pid for name, rec in StateFile(settings.home).read().items()}


def test_up_is_idempotent_and_down_leaves_no_process(own: Settings) -> None:
    first = local.up(own)
    assert [s.action for s in first.services] == ["started"] * 3
    assert sorted(first.topics_created) == ["crypto-prices", "crypto-prices.dlq"]
    pids = _pids(own)
    assert all(psutil.pid_exists(p) for p in pids.values())

    second = local.up(own)
    assert [s.action for s in second.services] == ["already running"] * 3
    assert second.topics_created == []
    assert _pids(own) == pids

    outcomes = local.down(own)
    assert {o.service: o.action for o in outcomes} == {
        "kafka": "stopped", "postgres": "stopped", "redis": "stopped"}
    assert not any(psutil.pid_exists(p) for p in pids.values())
    assert not (own.home / "stack.json").exists()
    assert {o.action for o in local.down(own)} == {"not running"}


def test_data_survives_down_and_up_but_not_purge(own: Settings) -> None:
    from cryptoctl.db.connection import connect

    local.up(own)
    with connect(own, autocommit=True) as conn:
        conn.execute("INSERT INTO cryptocurrencies (symbol, name) VALUES ('BTC', 'Bitcoin')")
    local.down(own)
    local.up(own)
    with connect(own) as conn:
        assert conn.execute("SELECT name FROM cryptocurrencies").fetchall() == [("Bitcoin",)]
    local.down(own, purge=True)
    assert not (own.home / "postgres").exists()
    local.up(own)
    with connect(own) as conn:
        assert conn.execute("SELECT count(*) FROM cryptocurrencies").fetchone() == (0,)


def test_stale_pid_file_is_replaced_with_a_note(own: Settings) -> None:
    local.up(own)
    state = StateFile(own.home)
    records = state.read()
    local.down(own)
    dead = records["redis"]
    state.write({"redis": dead})  # as if the machine had rebooted
    result = local.up(own)
    redis = next(s for s in result.services if s.service == "redis")
    assert redis.action == "started"
    assert f"stale PID file (PID {dead.pid} is gone)" in redis.note


def test_taken_port_is_a_clear_error_and_nothing_is_left_running(own: Settings) -> None:
    redis_port = int(own.redis_url.rsplit(":", 1)[1].split("/")[0])
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", redis_port))
    blocker.listen()
    try:
        with pytest.raises(StackError, match=f"port {redis_port} for Redis is already taken"):
            local.up(own)
    finally:
        blocker.close()
    assert StateFile(own.home).read() == {}  # kafka and postgres were stopped again


def test_server_dying_at_start_shows_its_log(own: Settings) -> None:
    # A corrupt config in the data dir makes PostgreSQL exit at once.
    local.up(own)
    local.down(own)
    conf = own.home / "postgres" / "data" / "postgresql.conf"
    conf.write_text(conf.read_text() + "\nshared_buffers = 'nonsense'\n")
    with pytest.raises(StackError) as info:
        local.up(own)
    assert "PostgreSQL exited with code" in info.value.message
    assert "shared_buffers" in info.value.message  # the log tail
    assert info.value.exit_code == ExitCode.STACK
    assert StateFile(own.home).read() == {}


def test_remote_endpoint_is_refused(own: Settings) -> None:
    remote = own.with_overrides(redis_url="redis://cache.example.com:6379/0")
    with pytest.raises(StackError, match="only starts servers on this machine"):
        local.up(remote)


def test_each_broker_start_has_its_own_cluster_id(own: Settings) -> None:
    from cryptoctl.kafka.clients import check_kafka

    local.up(own)
    first = check_kafka(own).cluster_id
    assert first == local.broker_cluster_id(own)
    local.stop_service(own, "kafka")
    local.start_service(own, "kafka")
    second = check_kafka(own).cluster_id
    assert second and second != first


def test_schema_applied_twice_changes_nothing(own: Settings) -> None:
    from cryptoctl.db.connection import apply_schema, connect

    local.up(own)

    def snapshot() -> list[tuple]:
        with connect(own) as conn:
            return conn.execute(
                "SELECT table_name, column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = 'public' ORDER BY 1, 2"
            ).fetchall()

    before = snapshot()
    apply_schema(own)
    apply_schema(own)
    assert snapshot() == before
    tables = {row[0] for row in before}
    assert {"cryptocurrencies", "raw_price_data", "price_aggregates_1m", "price_alerts",
            "processing_metadata", "late_ticks", "v_latest_prices", "v_price_stats_24h"} <= tables


def test_state_file_records_are_json(own: Settings) -> None:
    local.up(own)
    data = json.loads((own.home / "stack.json").read_text())
    assert set(data["services"]) == {"kafka", "postgres", "redis"}
    assert data["services"]["postgres"]["version"].startswith("PostgreSQL 18")


def test_state_dir_logs_and_data_are_private(own: Settings) -> None:
    local.up(own)
    mode = lambda p: p.stat().st_mode & 0o777  # noqa: E731
    assert mode(own.home) == 0o711  # the PostgreSQL user traverses it, nobody lists it
    assert mode(own.home / "logs") == 0o700
    assert mode(own.home / "stack.json") == 0o600
    logs = list((own.home / "logs").iterdir())
    assert {p.name for p in logs} == {"kafka.log", "postgres.log", "redis.log"}
    assert all(mode(p) == 0o600 for p in logs)
    for service in ("kafka", "redis"):
        assert mode(own.home / service) == 0o700, service
    assert mode(own.home / "postgres") & 0o066 == 0  # others may traverse it at most
    assert mode(own.home / "postgres" / "data") == 0o700
    assert mode(own.home / "redis" / "redis.conf") == 0o600


def test_a_password_in_the_redis_url_is_enforced() -> None:
    import redis

    with state_home() as home:
        port = free_port()
        for settings in _own_stack(home):
            settings = settings.with_overrides(redis_url=f"redis://:s3%20cret@localhost:{port}/0")
            local.up(settings)
            with pytest.raises(redis.AuthenticationError):
                redis.Redis(port=port).ping()
            assert redis.Redis(port=port, password="s3 cret").ping()
            assert "s3" not in " ".join(psutil.Process(_pids(settings)["redis"]).cmdline())
            local.down(settings, purge=True)


def test_a_redis_user_other_than_default_is_refused(own: Settings) -> None:
    settings = own.with_overrides(redis_url=f"redis://alice:pw@localhost:{free_port()}/0")
    with pytest.raises(ConfigError, match="only the user 'default'"):
        local.up(settings)


def test_two_ups_at_once_both_succeed(own: Settings) -> None:
    import threading

    results: list[local.UpResult] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            results.append(local.up(own))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    actions = sorted(tuple(s.action for s in r.services) for r in results)
    assert actions == [("already running",) * 3, ("started",) * 3]


def test_an_unusable_state_dir_is_a_stack_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    settings = load_settings({"home": blocker / "home"}, environ={})
    with pytest.raises(StackError, match="state directory .* is not usable") as info:
        local.up(settings)
    assert info.value.exit_code == ExitCode.STACK
    assert "CRYPTOCTL_HOME" in str(info.value)
