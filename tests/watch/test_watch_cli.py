"""`cryptoctl watch` against the real local broker: JSON lines, and the live display in a pty."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from typing import Any

import pytest

from cryptoctl.cache.client import Keys, MarketKey, market_id, redis_client
from cryptoctl.cache.documents import CandleDoc
from cryptoctl.settings import Settings
from cryptoctl.tick import Tick
from cryptoctl.watch.reader import TAIL_PER_PARTITION
from tests.helpers import produce_ticks, stack_env
from tests.watch.pty_terminal import PtyCommand

NOW = int(time.time() * 1000)


def ticks(
    n: int, *, symbols: tuple[str, ...] = ("BTC", "ETH", "SOL"), source: str = "synthetic",
    quote: str = "USD", offset: float = 0.0,
) -> list[Tick]:
    base = {"BTC": 67000.0 + offset, "ETH": 3400.0 + offset, "SOL": 150.0 + offset}
    return [
        Tick(
            symbol=sym,
            price=round(base[sym] + i * 0.25, 2),
            ts=NOW + i * 10,
            source=source,
            recv_ts=NOW + i * 10,
            quote=quote,
            qty=0.5,
            extra={"change_24h_pct": 1.5} if i % 2 else {},
        )
        for i in range(n)
        for sym in symbols
    ]


# An exchange feed's record of trades it could not fetch (cryptoctl/exchanges/trade.py).
GAP = (b'{"v":1,"kind":"gap","source":"binance","symbol":"BTC","quote":"USDT","first_id":5,'
       b'"last_id":9,"after_ts":%d,"before_ts":%d,"reason":"history not available"}'
       % (NOW, NOW + 1))  # fmt: skip


def test_jsonl_yields_exactly_the_produced_ticks(settings: Settings) -> None:
    produced = ticks(40)
    produce_ticks(settings, produced)
    produce_ticks(settings, [(b"BTC", b"{not json"), (b"ETH", b'{"symbol": "eth"}'), (b"BTC", GAP)])
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
    # The gap record is neither a line nor an invalid message.
    assert "80 ticks from 2 markets" in result.stderr and "2 invalid" in result.stderr


def test_source_and_quote_filters_pick_markets(cli: Any, settings: Settings) -> None:
    produce_ticks(settings, ticks(3, symbols=("BTC", "ETH")))  # synthetic, USD
    binance = ticks(3, symbols=("BTC", "ETH"), source="binance", quote="USDT")
    produce_ticks(settings, binance + ticks(2, symbols=("BTC",), source="binance", quote="BTC"))
    args = ("watch", "-f", "jsonl", "--from-beginning", "--duration", "2s", "--source", "Binance")
    result = cli(*args, "--quote", "usdt", "-s", "btc")
    assert result.exit_code == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines == [t.to_dict() for t in binance if t.symbol == "BTC"]
    assert "3 ticks from 1 market" in result.stderr
    bad = cli("watch", "--quote", "US-D", "--duration", "1s")
    assert bad.exit_code == 2 and "no currency code" in bad.stderr


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
        assert "16 ticks from 3 markets" in tail and "1 invalid" in tail
        assert "BTC    last 68,000.00" in tail
        assert "Traceback" not in term.text
    finally:
        term.close()


def _put_current_candle(settings: Settings, market: MarketKey, bucket_ms: int, close: float) -> None:
    """What the aggregator leaves in Redis for a market's open 1-minute candle."""
    symbol, source, quote = market
    doc = CandleDoc(symbol, bucket_ms, close, close, close, close, 0.0, 7, close, None, bucket_ms,
                    bucket_ms + 1, "open", False, source, quote)  # fmt: skip
    client, keys = redis_client(settings), Keys(settings.redis_prefix)
    client.set(keys.candle_current(market), doc.to_json())
    client.sadd(keys.markets, market_id(market))


def _rows(screen: str, label: str) -> list[str]:
    """The table rows of a market's name (``ETH``, ``BTC/USDT binance``), name whole."""
    return [line for line in screen.splitlines() if re.match(rf"\W*{re.escape(label)}\s+│", line)]


@pytest.mark.parametrize("cols", [80, 120])
def test_live_display_fits_the_terminal_width(settings: Settings, cols: int) -> None:
    # BTC in two markets (synthetic BTC/USD and Binance BTC/USDT), ETH and SOL in one each.
    produced = ticks(40) + ticks(40, symbols=("BTC",), source="binance", quote="USDT", offset=-50.0)
    produce_ticks(settings, produced)
    produce_ticks(settings, [(b"BTC", GAP)])
    last_ts = {(t.symbol, t.source): t.ts for t in produced}
    minute = lambda ts: ts - ts % 60_000  # noqa: E731
    btc_usd, btc_usdt = ("BTC", "synthetic", "USD"), ("BTC", "binance", "USDT")
    _put_current_candle(settings, btc_usd, minute(last_ts["BTC", "synthetic"]), 67009.75)
    _put_current_candle(settings, btc_usdt, minute(last_ts["BTC", "binance"]), 66958.5)
    _put_current_candle(settings, ("ETH", "synthetic", "USD"), minute(last_ts["ETH", "synthetic"])
                        - 60_000, 3333.0)  # aggregator stopped  # fmt: skip
    _put_current_candle(settings, ("SOL", "binance", "USDT"), minute(NOW), 1.5)  # not SOL's market
    prices = {"BTC/USD synthetic": "67,009.75", "BTC/USDT binance": "66,959.75", "ETH": "3,409.75",
              "SOL": "159.75"}  # base + 39 * 0.25  # fmt: skip
    hhmm = time.strftime("%H:%M", time.gmtime(minute(last_ts["BTC", "synthetic"]) / 1000))
    term = PtyCommand(["watch", "--from-beginning"], stack_env(settings), cols=cols, rows=30)

    def shown(screen: str) -> bool:  # all ticks read and the candles polled from Redis
        rows = {label: _rows(screen, label) for label in prices}
        return (all(rows.values()) and "160 ticks" in screen and "(stale)" in rows["ETH"][-1]
                and f"{hhmm} " in rows["BTC/USD synthetic"][-1]
                and f"{hhmm} " in rows["BTC/USDT binance"][-1])  # fmt: skip

    try:
        screen = term.wait_for(shown)
        for label, price in prices.items():
            row = _rows(screen, label)[-1]  # the latest redraw
            assert re.match(rf"\W*{re.escape(label)}\s+│\s+{re.escape(price)} ", row), row
            assert "…" not in row and len(row) <= cols
        usd, usdt = _rows(screen, "BTC/USD synthetic")[-1], _rows(screen, "BTC/USDT binance")[-1]
        assert f"{hhmm} C 67,009.75" in usd and "(stale)" not in usd
        assert f"{hhmm} C 66,958.50" in usdt and "(stale)" not in usdt  # its own market's candle
        eth, sol = _rows(screen, "ETH")[-1], _rows(screen, "SOL")[-1]
        assert "(stale)" in eth and "3,333.00" in eth
        assert "1.5000" not in sol and "—" in sol  # Binance SOL's candle is not synthetic SOL's
        assert "invalid 0" in screen.split("160 ticks")[-1]  # the gap record is not invalid
        assert "4 markets of 3 symbols" in screen
        assert term.interrupt() == 0
        tail = term.text.split("watch summary:")[-1]
        assert "160 ticks from 4 markets of 3 symbols" in tail and "0 invalid" in tail
        assert "BTC/USDT binance  last 66,959.75" in tail
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
