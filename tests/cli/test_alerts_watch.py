"""`cryptoctl alerts watch`: the stored events first, then each published one as a line, a
bell on a terminal; in a real pty at 80 and 120 columns, and as jsonl for scripts."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cryptoctl.alerts.delivery import DeliveryWorker
from cryptoctl.settings import Settings
from tests.alerts.outbox import T0, fire
from tests.helpers import stack_env
from tests.watch.pty_terminal import PtyCommand


@pytest.mark.parametrize("cols", [80, 120])
def test_watch_in_a_terminal_shows_stored_then_live_events_with_a_bell(settings: Settings, cols: int) -> None:
    fire(
        settings, 8, symbol="SOL", condition="change", threshold=5.0, window_ms=600_000,
        price=157.5, reference=150.0, time_ms=T0 + 60_000,
    )  # fmt: skip
    DeliveryWorker(settings).deliver_due()  # stored and published before watch started
    term = PtyCommand(["alerts", "watch"], stack_env(settings), cols=cols, rows=30)
    try:
        term.wait_for(lambda s: "watching for alerts" in s)
        assert "SOL/USDT binance  157.50  change 5% within 10m from 150.00  #8" in term.text
        assert b"\x07" not in term.raw  # no bell for what fired before
        fire(settings, 3, symbol="BTC", price=100_012.5, time_ms=T0 + 120_000)
        DeliveryWorker(settings).deliver_due()
        screen = term.wait_for(lambda s: "BTC/USDT" in s)
        [line] = [x for x in screen.splitlines() if "BTC/USDT" in x]
        assert line.replace("\a", "").strip() == "00:02:00  BTC/USDT binance  100,012.50  above 100000  #3"
        assert b"\x07" in term.raw
        assert all(len(x) <= cols for x in screen.splitlines())
        assert term.interrupt() == 0
        assert "1 alert while watching" in term.text and "Traceback" not in term.text
    finally:
        term.close()


def test_watch_for_scripts_is_jsonl_without_a_bell(settings: Settings, cli: Any) -> None:
    first = fire(settings, 1, price=100_001.0, time_ms=T0)
    second = fire(settings, 2, symbol="ETH", condition="below", threshold=3000.0, price=2999.0)
    result = cli("alerts", "watch", "--last", "2", "--format", "jsonl", "--duration", "300ms")
    assert result.exit_code == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["id"], r["symbol"], r["price"]) for r in rows] == [
        (first, "BTC", 100001.0), (second, "ETH", 2999.0),
    ]  # fmt: skip
    table = cli("alerts", "watch", "--last", "1", "--duration", "300ms")
    assert table.stdout.splitlines() == ["00:00:00  ETH/USDT binance  2,999.00  below 3000  #2"]
    assert "\a" not in table.stdout and "0 alerts while watching" in table.stderr


def test_watch_without_redis_names_it(settings: Settings, cli: Any) -> None:
    result = cli("--redis-url", "redis://127.0.0.1:1/0", "alerts", "watch", "--duration", "1s")
    assert result.exit_code == 3 and result.stdout == ""
    assert result.stderr.startswith("error: Redis is not reachable at redis://127.0.0.1:1/0")
