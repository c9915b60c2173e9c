"""`cryptoctl run`: the whole pipeline in one command, its dashboard, and its source choice."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import pytest
from rich.console import Console

from cryptoctl.aggregator import AggregatorStats
from cryptoctl.cache.documents import CandleDoc
from cryptoctl.cache.poller import NONE_YET, NOT_CHECKED, OK, UNAVAILABLE
from cryptoctl.db.connection import connect
from cryptoctl.errors import DatabaseError, UsageError
from cryptoctl.pipeline.runner import Snapshot
from cryptoctl.producer import ProducerRun, ProducerStats
from cryptoctl.render.dashboard import dashboard, health_table, run_summary, status_line
from cryptoctl.settings import Settings
from cryptoctl.sources.coingecko import Reachability
from cryptoctl.sources.spec import (
    SourceChoice,
    binance_reachable,
    build_source,
    choose_source,
    run_quote,
    run_spec,
)
from tests.fakes import FakeExchange, fake_exchange
from tests.helpers import stack_env
from tests.sources.test_exchange_feed import trade_sets
from tests.watch.pty_terminal import PtyCommand

BUCKET = 1_793_491_200_000
BTC = ("BTC", "synthetic", "USD")  # the run's market of BTC: (symbol, source, quote)
# A market row with a price and a current 1-minute candle from Redis (HH:MM then numbers).
PRICED_ROW = re.compile(r"BTC\s+[\d,]+\.\d+\s+\d\d:\d\d\s+[\d,]+\.\d+")
BINANCE_DOWN = {"CRYPTOCTL_BINANCE_REST_URL": "http://127.0.0.1:9"}  # nothing listens there


@dataclass
class Probe:
    ok: bool
    detail: str = ""


def no_probe(url: str) -> Probe:
    raise AssertionError(f"an explicit --source is not checked, but {url} was pinged")


def test_source_choice() -> None:
    s = Settings()
    for explicit in ("synthetic", "coingecko", "binance", "kraken"):
        assert choose_source(s, explicit, no_probe) == SourceChoice(explicit)
    pinged: list[str] = []

    def answers(url: str) -> Probe:
        pinged.append(url)
        return Probe(True)

    assert choose_source(s, None, answers) == SourceChoice("binance")
    assert choose_source(s, None, answers, rest_url="http://127.0.0.1:1") == SourceChoice("binance")
    assert pinged == ["https://api.binance.com", "http://127.0.0.1:1"]  # --rest-url, if given
    fallback = choose_source(s, None, lambda _: Probe(False, "cannot reach it: ConnectError"))
    assert fallback.name == "synthetic" and fallback.fell_back
    assert fallback.note == (
        "Binance cannot be reached (cannot reach it: ConnectError); using the synthetic market"
        " instead. Use --source binance to insist, --source coinbase or kraken for another"
        " exchange, or --source synthetic to skip this check."
    )


def test_run_spec_keeps_the_chosen_sources_flags() -> None:
    flags = {"interval_ms": 10_000, "rate": 10.0, "quote": "usdc", "ws_url": "ws://x",
             "rest_url": "http://x"}  # fmt: skip
    binance = run_spec(SourceChoice("binance"), ("BTC",), **flags)
    assert (binance.quote, binance.ws_url, binance.rest_url) == ("usdc", "ws://x", "http://x")
    assert binance.rate is None and binance.interval_ms is None
    assert run_quote(binance) == "USDC"
    assert run_quote(run_spec(SourceChoice("kraken"), ("BTC",), interval_ms=1, rate=1.0)) == "USD"
    assert run_quote(run_spec(SourceChoice("binance"), ("BTC",), interval_ms=1, rate=1.0)) == "USDT"
    fallback = run_spec(SourceChoice("synthetic", "Binance cannot be reached"), ("BTC",), **flags)
    assert (fallback.quote, fallback.rest_url, fallback.rate) == (None, None, 10.0)
    assert run_quote(fallback) == "USD"
    with pytest.raises(UsageError, match="--quote is for --source binance or coinbase or kraken"):
        build_source(Settings(), run_spec(SourceChoice("synthetic"), ("BTC",), **flags))


SYMBOLS = ("BTC", "ETH", "SOL")  # run's default symbols


@contextmanager
def fake_binance() -> Iterator[FakeExchange]:
    """A fake Binance streaming BTC, ETH and SOL trades (USDT) from the first subscription."""
    with fake_exchange("binance", trade_sets("binance", SYMBOLS, 3_000), live=2_500) as fx:
        yield fx


def test_the_binance_probe_pings_the_configured_rest_url() -> None:
    with fake_binance() as fx:
        assert binance_reachable(fx.rest_url) == Reachability(True, f"{fx.rest_url} answered")
        assert fx.requests["/api/v3/ping"] == 1
        elsewhere = f"{fx.rest_url}/not-the-api"  # a server that is not Binance's API there
        answer = binance_reachable(elsewhere)
        assert answer == Reachability(False, f"{elsewhere} answered HTTP 404")
    down = binance_reachable("http://127.0.0.1:9", timeout_s=0.5)
    assert down == Reachability(False, "cannot reach http://127.0.0.1:9: ConnectError")


def snapshot(**over: Any) -> Snapshot:
    producer = ProducerStats(
        source="synthetic", topic="t", produced=120, delivered=118, failed=0, pending=2,
        retries=0, unchanged=0, invalid=0, source_errors=0, restarts=0, ticks_per_s=10.0,
        elapsed_s=12.0, last_price={"BTC": 67012.5, "ETH": 3400.25}, last_problem="",
    )  # fmt: skip
    aggregator = AggregatorStats(
        state="running", elapsed_s=12.0, ticks=117, ticks_per_s=9.8, late=3, invalid=1,
        candles_written=40, candles_final=2, raw_ticks_written=117, open_windows=2, flushes=30,
        flush_latency_ms_p50=4.25, flush_latency_ms_last=5.0, partitions=(0, 1, 2),
        watermarks={0: None}, fenced=0, offset_resets=0, pg_retries=0, dlq_failed=0,
        cache_pending=0, cache_connected=True, cache_errors=0, kafka_errors=0,
    )  # fmt: skip
    candle = CandleDoc("BTC", BUCKET, 67000.0, 67100.0, 66900.0, 67012.5, 0.0, 9, 67000.0, None,
                       BUCKET, BUCKET + 59_000, "open", False)
    values: dict[str, Any] = {
        "source": SourceChoice("synthetic", "Binance cannot be reached (x); using the synthetic"),
        "elapsed_s": 12.0, "producer": producer, "aggregator": aggregator,
        "current": {BTC: candle}, "final": {BTC: candle._replace(bucket_ms=BUCKET - 60_000)},
        "cache_status": "ok",
    }  # fmt: skip
    return Snapshot(**(values | over))


def test_dashboard_renders_prices_candles_and_health() -> None:
    console = Console(record=True, width=140, color_system=None, file=io.StringIO())
    console.print(
        dashboard(snapshot(), symbols=["BTC", "ETH", "SOL"], topic="crypto-prices", width=140)
    )
    text = console.export_text()
    assert "source synthetic" in text
    assert "market · synthetic · USD" in text  # the run's one source and quote, said once
    assert "cannot be reached" not in text  # `run` said it once above the dashboard, not each frame
    btc = next(line for line in text.splitlines() if line.strip().startswith("BTC"))
    assert "67,012.50" in btc and "00:00" in btc and "23:59" in btc and "67,100.00" in btc
    sol = next(line for line in text.splitlines() if line.strip().startswith("SOL"))
    assert "—" in sol
    for label, value in (("produced", "120"), ("aggregated", "117"), ("late", "3"),
                         ("invalid", "1"), ("flush p50", "4.2 ms")):  # fmt: skip
        line = next(line for line in text.splitlines() if label in line)
        assert value in line.split(label, 1)[1]
    assert "produced 120 · aggregated 117" in status_line(snapshot())
    summary = run_summary(snapshot(), (12, 2)).plain
    assert "candles stored: 12 (2 final)" in summary
    assert "cryptoctl candles --since 10m" in summary and "cryptoctl down" in summary


@pytest.mark.parametrize(
    ("status", "shown"),
    [(NOT_CHECKED, "waiting"), (NONE_YET, "ok"), (OK, "ok"), (UNAVAILABLE, "Redis unavailable")],
)
def test_the_health_table_words_the_cache_status_as_before(status: str, shown: str) -> None:
    offline = replace(snapshot().aggregator, cache_connected=False)  # the writer's view aside
    console = Console(record=True, width=140, color_system=None, file=io.StringIO())
    console.print(health_table(snapshot(aggregator=offline, cache_status=status)))
    line = next(line for line in console.export_text().splitlines() if "cache" in line)
    assert line.split("cache", 1)[1].split()[:len(shown.split())] == shown.split()


@pytest.mark.parametrize("width", [80, 100, 140])
def test_dashboard_never_cuts_a_price_short(width: int) -> None:
    console = Console(record=True, width=width, color_system=None, file=io.StringIO())
    console.print(dashboard(snapshot(), symbols=["BTC"], topic="t", width=width))
    btc = next(line for line in console.export_text().splitlines() if line.strip().startswith("BTC"))
    assert "…" not in btc
    assert btc.split()[:3] == ["BTC", "67,012.50", "00:00"]
    assert ("67,100.00" in btc) is (width >= 118)  # high only where it fits


def exchange_snapshot() -> Snapshot:
    """A run of Binance BTC/USDT while the cache also holds Coinbase BTC/USD (another
    `produce`) and a Binance BTC/USD: only the run's market is its row."""
    base = snapshot()
    doc = base.current[BTC]
    run_market, coinbase, other_quote = ("BTC", "binance", "USDT"), ("BTC", "coinbase", "USD"), (
        "BTC", "binance", "USD")
    return replace(
        base, source=SourceChoice("binance"), quote="USDT",
        current={run_market: doc._replace(close=67012.5, trades=9),
                 coinbase: doc._replace(close=11111.0, trades=77),
                 other_quote: doc._replace(close=22222.0, trades=88)},
        final={coinbase: doc._replace(close=33333.0)},
    )  # fmt: skip


@pytest.mark.parametrize("width", [80, 120])
def test_dashboard_rows_are_the_runs_markets_with_their_own_candles(width: int) -> None:
    console = Console(record=True, width=width, color_system=None, file=io.StringIO())
    console.print(dashboard(exchange_snapshot(), symbols=["BTC", "ETH"], topic="t", width=width))
    text = console.export_text()
    assert "market · binance · USDT" in text
    btc = next(line for line in text.splitlines() if line.strip().startswith("BTC"))
    assert btc.split()[:3] == ["BTC", "67,012.50", "00:00"] and btc.split()[-2:] == ["9", "—"]
    for other in ("11,111.00", "22,222.00", "33,333.00", "77", "88"):
        assert other not in text  # another market's candle is never shown as the run's
    eth = next(line for line in text.splitlines() if line.strip().startswith("ETH"))
    assert eth.split() == ["ETH", "3,400.25", "—", "—"]
    assert all(len(line) <= width for line in text.splitlines())


def stored(settings: Settings) -> tuple[int, int]:
    with connect(settings) as conn:
        row = conn.execute("SELECT count(*), count(DISTINCT symbol) FROM price_aggregates_1m").fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def test_run_synthetic_for_20s_stores_candles(settings: Settings) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cryptoctl", "run", "--source", "synthetic", "--duration", "20s",
         "--symbols", "BTC,ETH", "--rate", "20"],
        env=stack_env(settings), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""  # not a terminal: no dashboard, status goes to stderr
    candles, symbols = stored(settings)
    assert candles >= 2 and symbols == 2
    assert f"candles stored: {candles}" in result.stderr
    assert "produced" in result.stderr and "cryptoctl candles --since 10m" in result.stderr
    assert "Traceback" not in result.stderr
    listed = subprocess.run(
        [sys.executable, "-m", "cryptoctl", "candles", "--since", "10m", "--format", "csv"],
        env=stack_env(settings), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert listed.returncode == 0 and len(listed.stdout.splitlines()) == candles + 1


def test_dashboard_in_a_terminal_with_fallback_and_ctrl_c(settings: Settings) -> None:
    env = stack_env(settings) | BINANCE_DOWN
    term = PtyCommand(["run", "--symbols", "BTC,ETH", "--rate", "20"], env, cols=160, rows=50)
    try:
        term.wait_for(lambda s: "using the synthetic market instead" in s, timeout=30)
        screen = term.wait_for(
            lambda s: "cryptoctl run · source synthetic" in s and PRICED_ROW.search(s) is not None,
            timeout=30,
        )
        assert "BTC" in screen and "ETH" in screen and "produced" in screen
        assert term.interrupt(timeout=60) == 0
        tail = term.text.split("pipeline stopped")[-1]
        assert "candles stored:" in tail and "cryptoctl candles --since 10m" in tail
        assert "Traceback" not in term.text
    finally:
        term.close()
    assert stored(settings)[0] >= 1


FALLBACK = "Binance cannot be reached"


def binance_candles(settings: Settings) -> dict[str, int]:
    """Stored 1-minute candles of each binance ?/USDT market, by symbol."""
    with connect(settings) as conn:
        rows = conn.execute(
            "SELECT symbol, count(*) FROM price_aggregates_1m"
            " WHERE source = 'binance' AND quote = 'USDT' GROUP BY symbol"
        ).fetchall()
    return {symbol: int(n) for symbol, n in rows}


# An exchange feed connects only after looking for resume points on the topic (about 1 s
# per partition, 6 here): runs of an exchange last longer than the synthetic ones.


def test_run_binance_shows_its_markets_and_stores_their_candles(settings: Settings) -> None:
    with fake_binance() as fx:
        args = ["run", "--source", "binance", "--ws-url", fx.ws_url, "--rest-url", fx.rest_url,
                "--duration", "12s"]  # fmt: skip
        term = PtyCommand(args, stack_env(settings), cols=160, rows=50)
        try:
            screen = term.wait_for(
                lambda s: "market · binance · USDT" in s and PRICED_ROW.search(s) is not None,
                timeout=60,
            )
            assert "cryptoctl run · source binance" in screen
            assert "Binance cannot be reached" not in screen
            term.wait_for(lambda s: "pipeline stopped" in s, timeout=90)
            assert "ticks (binance)" in term.text and "Traceback" not in term.text
        finally:
            term.close()
        assert fx.requests["/api/v3/ping"] == 0  # given explicitly: no probe
    candles = binance_candles(settings)
    assert set(candles) == set(SYMBOLS) and candles["BTC"] >= 2, candles


def test_the_default_is_binance_when_it_answers(settings: Settings) -> None:
    with fake_binance() as fx:
        env = stack_env(settings) | {
            "CRYPTOCTL_BINANCE_REST_URL": fx.rest_url, "CRYPTOCTL_BINANCE_WS_URL": fx.ws_url,
        }  # fmt: skip
        result = subprocess.run(
            [sys.executable, "-m", "cryptoctl", "run", "--symbols", "BTC", "--duration", "10s"],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert fx.requests["/api/v3/ping"] == 1
    assert result.returncode == 0, result.stderr
    assert FALLBACK not in result.stderr and "ticks (binance)" in result.stderr
    assert set(binance_candles(settings)) == {"BTC"}


def test_the_fallback_is_said_once_in_a_terminal(settings: Settings) -> None:
    env = stack_env(settings) | BINANCE_DOWN
    term = PtyCommand(["run", "--symbols", "BTC", "--duration", "4s"], env, cols=100, rows=40)
    try:
        # Every redraw of the dashboard is in the stream: a note in it would repeat.
        term.wait_for(lambda s: "pipeline stopped" in s, timeout=90)
        assert term.text.count("cryptoctl run · source synthetic") >= 2  # several frames
        assert term.text.count(FALLBACK) == 1, term.text[-3000:]
        assert "Use --source binance to insist" in term.text
    finally:
        term.close()


def test_the_fallback_is_said_once_off_a_terminal(settings: Settings) -> None:
    env = stack_env(settings) | BINANCE_DOWN
    result = subprocess.run(
        [sys.executable, "-m", "cryptoctl", "run", "--symbols", "BTC", "--duration", "3s"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr.count(FALLBACK) == 1 and FALLBACK not in result.stdout
    assert "Binance cannot be reached (cannot reach http://127.0.0.1:9: ConnectError)" in result.stderr
    assert "(synthetic)" in result.stderr


@pytest.mark.parametrize(
    ("error", "code", "line"),
    [
        # Before: "the pipeline stopped: RuntimeError: …hunter2…", exit 1.
        (
            RuntimeError("cannot use postgresql://cryptoctl:hunter2@db.example/x"),
            1,
            "error: internal error: RuntimeError: cannot use postgresql://cryptoctl:***@db.example/x",
        ),
        (
            DatabaseError("db.example:5432/x", "writing candles", "disk full"),
            6,
            "error: PostgreSQL at db.example:5432/x: writing candles failed: disk full",
        ),
        # A worker's closed pipe is not run's stdout closing (that one exits 0 quietly).
        (
            BrokenPipeError(32, "Broken pipe"),
            1,
            "error: internal error: BrokenPipeError in the producer thread",
        ),
    ],
)
def test_a_worker_error_reaches_the_one_handler_as_it_is(
    cli: Any, settings: Settings, monkeypatch: pytest.MonkeyPatch, error: Exception, code: int,
    line: str,
) -> None:
    def fail(self: Any, stop: Any) -> None:
        raise error

    monkeypatch.setattr(ProducerRun, "run", fail)
    result = cli("run", "--source", "synthetic", "--duration", "20s")
    assert result.exit_code == code, result.stderr
    assert "hunter2" not in result.stdout + result.stderr
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(line), result.stderr


@pytest.mark.parametrize("width", [80, 120])
def test_dashboard_shows_a_line_per_recent_alert_within_the_width(width: int) -> None:
    from cryptoctl.alerts.events import AlertEvent

    alerts = [
        AlertEvent(10 + i, 3, "coingecko", "ETHEREUMCLASSICLONGNAME", "USDT", "change", 12.5,
                   5_400_000, 12_345.678, 11_000.0, BUCKET, BUCKET, "delivered")
        for i in range(4)
    ] + [AlertEvent(5, 1, "binance", "BTC", "USDT", "above", 100_000.0, None, 100_012.5, None,
                    BUCKET, BUCKET, "pending")]  # fmt: skip
    console = Console(record=True, width=width, color_system=None, file=io.StringIO())
    console.print(dashboard(snapshot(), symbols=["BTC"], topic="t", width=width, alerts=alerts[3:]))
    lines = [line for line in console.export_text().splitlines() if line.startswith("alert ")]
    assert len(lines) == 2 and all(len(line) <= width for line in lines)
    assert lines[1].startswith("alert 00:00:00  BTC/USDT binance  100,012.50  above 100000")
    console = Console(record=True, width=width, color_system=None, file=io.StringIO())
    console.print(dashboard(snapshot(), symbols=["BTC"], topic="t", width=width, alerts=alerts))
    assert sum(line.startswith("alert ") for line in console.export_text().splitlines()) == 3
