"""`cryptoctl watch` against the real local broker: JSON lines, and the live display in a pty."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from typing import Any

import pytest

from cryptoctl.cache.client import Keys, redis_client
from cryptoctl.cache.documents import CandleDoc
from cryptoctl.settings import Settings
from cryptoctl.tick import Tick
from cryptoctl.watch.reader import TAIL_PER_PARTITION
from tests.helpers import produce_ticks, stack_env
from tests.watch.pty_terminal import PtyCommand

NOW = int(time.time() * 1000)


def ticks(n: int, *, symbols: tuple[str, ...] = ("BTC", "ETH", "SOL")) -> list[Tick]:
    base = {"BTC": 67000.0, "ETH": 3400.0, "SOL": 150.0}
    return [
        Tick(
            symbol=sym,
            price=round(base[sym] + i * 0.25, 2),
            ts=NOW + i * 10,
            source="synthetic",
            recv_ts=NOW + i * 10,
            qty=0.5,
            extra={"change_24h_pct": 1.5} if i % 2 else {},
        )
        for i in range(n)
        for sym in symbols
    ]


def test_jsonl_yields_exactly_the_produced_ticks(settings: Settings) -> None:
    produced = ticks(40)
    produce_ticks(settings, produced)
    produce_ticks(settings, [(b"BTC", b"{not json"), (b"ETH", b'{"symbol": "eth"}')])
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cryptoctl",
            "watch",
            "--format",
            "jsonl",
            "--from-beginning",
            "--duration",
            "4s",
            "--symbol",
            "BTC",
            "-s",
            "sol",
        ],
        env=stack_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    wanted = [t.to_dict() for t in produced if t.symbol in {"BTC", "SOL"}]
    key = lambda d: (d["symbol"], d["ts"])  # noqa: E731
    assert sorted(lines, key=key) == sorted(wanted, key=key)
    # Per symbol (one partition each) the order is the produced order.
    assert [d["price"] for d in lines if d["symbol"] == "BTC"] == [
        t.price for t in produced if t.symbol == "BTC"
    ]
    assert "80 ticks from 2 symbols" in result.stderr and "2 invalid" in result.stderr


def test_not_a_tty_is_never_a_live_display(cli: Any, settings: Settings) -> None:
    produce_ticks(settings, ticks(3, symbols=("BTC",)))
    result = cli("watch", "--format", "table", "--from-beginning", "--duration", "2s")
    assert result.exit_code == 0, result.stderr
    assert [json.loads(line)["symbol"] for line in result.stdout.splitlines()] == ["BTC"] * 3
    assert "watch summary: 3 ticks" in result.stderr


def test_starts_near_the_end_without_from_beginning(settings: Settings) -> None:
    produced = ticks(200, symbols=("BTC",))
    for start in range(0, 200, 20):  # ten producer batches of 20
        produce_ticks(settings, produced[start : start + 20])
    result = subprocess.run(
        [sys.executable, "-m", "cryptoctl", "watch", "-f", "jsonl", "--duration", "3s"],
        env=stack_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    prices = [json.loads(line)["price"] for line in result.stdout.splitlines()]
    # The last TAIL_PER_PARTITION messages, plus at most one producer batch where the broker
    # reports the end of the log at the start of its last batch (the local Tansu broker).
    assert TAIL_PER_PARTITION <= len(prices) <= TAIL_PER_PARTITION + 20
    assert prices == [t.price for t in produced[-len(prices) :]]


def test_missing_topic_is_one_clear_line(cli: Any, settings: Settings, monkeypatch: Any) -> None:
    monkeypatch.setenv("CRYPTOCTL_TOPIC", "no-such-topic-here")
    result = cli("watch", "--duration", "1s")
    assert result.exit_code == 7
    assert "Kafka topic 'no-such-topic-here' does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def test_live_display_in_a_terminal_and_ctrl_c_summary(settings: Settings) -> None:
    produce_ticks(settings, ticks(5))
    term = PtyCommand(["watch"], stack_env(settings), cols=160, rows=40)
    try:
        screen = term.wait_for(lambda s: all(x in s for x in ("BTC", "ETH", "SOL", "15 ticks")))
        assert "67,001.00" in screen  # BTC's last price (67000 + 4 * 0.25)
        assert "3,401.00" in screen and "151.00" in screen
        assert "invalid 0" in screen and "sources: synthetic 15" in screen
        produce_ticks(settings, [(b"SOL", b"garbage")])
        produce_ticks(settings, [Tick("BTC", 68000.0, NOW + 999, "synthetic", NOW + 999)])
        term.wait_for(lambda s: "68,000.00 ▲" in s and "invalid 1" in s)
        assert term.interrupt() == 0
        tail = term.text.split("watch summary:")[-1]
        assert "16 ticks from 3 symbols" in tail and "1 invalid" in tail
        assert "BTC    last 68,000.00" in tail
        assert "Traceback" not in term.text
    finally:
        term.close()


def _put_current_candle(settings: Settings, symbol: str, bucket_ms: int, close: float) -> None:
    """What the aggregator leaves in Redis for a symbol's open 1-minute candle."""
    doc = CandleDoc(symbol, bucket_ms, close, close, close, close, 0.0, 7, close, None, bucket_ms,
                    bucket_ms + 1, "open", False)
    redis_client(settings).set(Keys(settings.redis_prefix).candle_current(symbol), doc.to_json())


def _rows(screen: str, symbol: str) -> list[str]:
    return [line for line in screen.splitlines() if re.match(rf"\W*{symbol}\b", line)]


@pytest.mark.parametrize("cols", [80, 120])
def test_live_display_fits_the_terminal_width(settings: Settings, cols: int) -> None:
    produced = ticks(40)  # a full sparkline per symbol
    produce_ticks(settings, produced)
    last_ts = {t.symbol: t.ts for t in produced}
    minute = lambda ts: ts - ts % 60_000  # noqa: E731
    _put_current_candle(settings, "BTC", minute(last_ts["BTC"]), 67009.75)
    _put_current_candle(settings, "ETH", minute(last_ts["ETH"]) - 60_000, 3333.0)  # aggregator stopped
    prices = {"BTC": "67,009.75", "ETH": "3,409.75", "SOL": "159.75"}  # base + 39 * 0.25
    hhmm = time.strftime("%H:%M", time.gmtime(minute(last_ts["BTC"]) / 1000))
    term = PtyCommand(["watch", "--from-beginning"], stack_env(settings), cols=cols, rows=30)

    def shown(screen: str) -> bool:  # all ticks read and both candles polled from Redis
        rows = {sym: _rows(screen, sym) for sym in prices}
        return (all(rows.values()) and "120 ticks" in screen and "(stale)" in rows["ETH"][-1]
                and f"{hhmm} " in rows["BTC"][-1])  # fmt: skip

    try:
        screen = term.wait_for(shown)
        for sym, price in prices.items():
            row = _rows(screen, sym)[-1]  # the latest redraw
            assert re.match(rf"\W*{sym}\s+│\s+{re.escape(price)} ", row), row
            assert "…" not in row and len(row) <= cols
        btc, eth = _rows(screen, "BTC")[-1], _rows(screen, "ETH")[-1]
        assert f"{hhmm} C 67,009.75" in btc and "(stale)" not in btc
        assert "(stale)" in eth and "3,333.00" in eth
        assert term.interrupt() == 0
        assert "Traceback" not in term.text
    finally:
        term.close()


def test_a_closed_pipe_ends_watch_quietly(settings: Settings) -> None:
    produce_ticks(settings, ticks(1_000))  # 3,000 lines: more than a pipe buffer holds
    proc = subprocess.Popen(
        [sys.executable, "-m", "cryptoctl", "watch", "--from-beginning", "--format", "jsonl",
         "--duration", "60s"],
        env=stack_env(settings), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = json.loads(proc.stdout.readline())
    assert first["symbol"] in {"BTC", "ETH", "SOL"}
    proc.stdout.close()  # like `| head -1`
    t0 = time.monotonic()
    code = proc.wait(timeout=30)
    stderr = proc.stderr.read().decode()
    assert code == 0, stderr
    assert time.monotonic() - t0 < 20  # stopped by the closed pipe, not by --duration
    assert "Traceback" not in stderr and "error" not in stderr.lower()


def test_a_terminal_stdout_gets_the_live_table_in_process(settings: Settings) -> None:
    from typer.testing import CliRunner

    from cryptoctl.cli.app import app
    from cryptoctl.cli.context import CliState
    from tests.watch.pty_terminal import plain

    produce_ticks(settings, ticks(4, symbols=("BTC", "ETH")))
    args = ["watch", "--from-beginning", "--duration", "2s", "-s", "btc"]
    result = CliRunner().invoke(app, args, obj=CliState(stdout_isatty=True, width=120))
    assert result.exit_code == 0, result.stderr
    assert "\x1b[" in result.stdout  # a live display, not JSON lines
    rows = _rows(plain(result.stdout.encode()), "BTC")
    assert rows and "67,000.75" in rows[-1]
    assert not _rows(plain(result.stdout.encode()), "ETH")  # -s is --symbols
    assert "watch summary: 4 ticks" in result.stderr
