"""`cryptoctl verify` end to end: our candles in the test schema (built from a trade set
with the brute-force reference), the exchange's from a loopback fake serving the same
trades, a fixed clock (minute 10 is forming), exit codes, table and JSON."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest

from cryptoctl.db.connection import connect
from cryptoctl.errors import ExitCode
from cryptoctl.exchanges.rest import ExchangeCandle
from cryptoctl.exchanges.trade import Market, Trade
from cryptoctl.exchanges.verify import MinuteCandle, compare
from cryptoctl.exchanges.verify_run import Plan, closed_range, plan
from cryptoctl.settings import Settings
from cryptoctl.times import iso_utc
from tests.fakes import MINUTE_MS, FakeExchange, fake_exchange, reference_candles

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
NOW = T0 + 10 * MINUTE_MS + 30_000  # minute 10 is still forming
EMPTY = (4, 5)  # minutes without a trade
MARKETS = {
    "binance": Market("binance", "BTC", "USDT"),
    "coinbase": Market("coinbase", "BTC", "USD"),
    "kraken": Market("kraken", "BTC", "USD"),
}
KINDS = list(MARKETS)
SINCE = ["--since", "2026-01-01T00:00:00Z"]


def trade_set(
    minutes: Sequence[int] = range(11), empty: Sequence[int] = EMPTY, per_minute: int = 4
) -> list[Trade]:
    trades, tid = [], 1
    for m in minutes:
        if m in empty:
            continue
        for k in range(per_minute):
            price = float(f"{90_000 + m * 3 + (k * 7) % 5 + k / 100:.2f}")
            qty = (1 + (m * 7 + k * 13) % 50) / 1000
            side = "buy" if (m + k) % 2 else "sell"
            trades.append(Trade(tid, T0 + m * MINUTE_MS + k * 10_000 + 5, price, qty, side))  # type: ignore[arg-type]
            tid += 1
    return trades


def dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def insert_ours(
    settings: Settings, market: Market, trades: Sequence[Trade], **changed: dict[str, Any]
) -> None:
    """Our candles of the trades, as the aggregator would store them; ``changed`` maps
    ``m<minute>`` to columns to overwrite (``{"close": 1.0}``) or to ``{}`` to leave it out."""
    by_minute: dict[int, list[Trade]] = defaultdict(list)
    for t in trades:
        by_minute[t.ts // MINUTE_MS * MINUTE_MS].append(t)
    rows = []
    for c in reference_candles(trades):
        change = changed.get(f"m{(c.start_ms - T0) // MINUTE_MS}")
        if change == {}:
            continue
        group = by_minute[c.start_ms]
        row = {
            "open": c.open, "high": c.high, "low": c.low, "close": c.close, "volume": c.volume,
            "trades": c.trades, "vwap": c.vwap,
        }  # fmt: skip
        row |= change or {}
        rows.append(
            (
                market.source,
                market.symbol,
                market.quote,
                dt(c.start_ms),
                row["open"],
                row["high"],
                row["low"],
                row["close"],
                row["volume"],
                row["trades"],
                sum(t.price for t in group),
                c.vwap * c.volume,
                sum(t.price for t in group) / len(group),
                row["vwap"],
                dt(group[0].ts),
                dt(group[-1].ts),
                True,
            )
        )
    for name, change in changed.items():  # a candle for a minute without trades
        minute = int(name[1:])
        if change and T0 + minute * MINUTE_MS not in by_minute:
            rows.append(
                (
                    market.source,
                    market.symbol,
                    market.quote,
                    dt(T0 + minute * MINUTE_MS),
                    1.0,
                    1.0,
                    1.0,
                    1.0,
                    1.0,
                    1,
                    1.0,
                    1.0,
                    1.0,
                    1.0,
                    dt(T0 + minute * MINUTE_MS),
                    dt(T0 + minute * MINUTE_MS),
                    True,
                )
            )
    with connect(settings, autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO price_aggregates_1m (source, symbol, quote, bucket, open, high, low, close,"
            " volume, trades, price_sum, pv_sum, avg_price, vwap, open_time, close_time, final)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            rows,
        )


def insert_gap(settings: Settings, market: Market, after_ms: int, before_ms: int) -> None:
    with connect(settings, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO feed_gaps (source, symbol, quote, first_trade_id, last_trade_id, after_time,"
            " before_time, reason) VALUES (%s, %s, %s, 100, 120, %s, %s, 'test: REST no longer has them')",
            (market.source, market.symbol, market.quote, dt(after_ms), dt(before_ms)),
        )


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The command's wall clock, fixed at NOW unless a test sets another."""
    now = {"ms": NOW}
    monkeypatch.setattr("cryptoctl.cli.verify.clock", lambda: now["ms"] / 1000)
    return now


@contextmanager
def exchange(kind: str, trades: Sequence[Trade]) -> Iterator[FakeExchange]:
    """The fake with every trade in its history (nothing streamed live)."""
    with fake_exchange(kind, {MARKETS[kind]: trades}, live=0, pace_s=None) as fx:
        yield fx


def run_verify(cli: Any, fx: FakeExchange, *args: str, symbols: str = "BTC") -> Any:
    return cli("verify", "--source", fx.kind, "--symbols", symbols, *SINCE, "--rest-url", fx.rest_url, *args)


def statuses(result: Any) -> dict[str, str]:
    return {r["bucket"]: r["status"] for r in json.loads(result.stdout)}


def minute(m: int) -> str:
    return iso_utc(T0 + m * MINUTE_MS)


# --- whole runs, per exchange --------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_identical_candles_match_and_exit_0(kind: str, settings: Settings, cli: Any, clock: Any) -> None:
    trades = trade_set()
    insert_ours(settings, MARKETS[kind], trades)
    with exchange(kind, trades) as fx:
        result = run_verify(cli, fx)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    quote = MARKETS[kind].quote
    # market, minutes, match, differs, missing here, missing there, empty, incomplete
    row = next(line for line in lines if line.startswith(f"BTC/{quote}"))
    assert row.split() == [f"BTC/{quote}", "10", "8", "0", "0", "0", "2", "0"]
    assert "not match or empty" not in result.stdout
    assert all(len(line) <= 80 for line in lines)
    assert result.stderr == ""


@pytest.mark.parametrize("kind", KINDS)
def test_one_altered_candle_is_named_with_its_field_and_both_values(
    kind: str, settings: Settings, cli: Any, clock: Any
) -> None:
    trades = trade_set()
    right = reference_candles(trades)[2]
    insert_ours(settings, MARKETS[kind], trades, m2={"close": right.close + 0.01})
    with exchange(kind, trades) as fx:
        result = run_verify(cli, fx, "--format", "json")
    assert result.exit_code == ExitCode.DIFFERENCES == 8, result.stderr
    records = json.loads(result.stdout)
    (bad,) = [r for r in records if r["status"] != "match" and r["status"] != "empty"]
    assert bad == {
        "source": kind, "symbol": "BTC", "quote": MARKETS[kind].quote, "bucket": minute(2),
        "status": "differs", "fields": {"close": {"ours": right.close + 0.01, "theirs": right.close}},
    }  # fmt: skip
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("error: our candles are not") and "1 differs" in error


@pytest.mark.parametrize("kind", KINDS)
def test_the_table_lists_what_differs_within_80_columns(
    kind: str, settings: Settings, cli: Any, clock: Any
) -> None:
    trades = trade_set()
    right = reference_candles(trades)[3]
    insert_ours(settings, MARKETS[kind], trades, m3={"high": right.high * 2, "volume": right.volume * 1.5})
    with exchange(kind, trades) as fx:
        result = run_verify(cli, fx)
    assert result.exit_code == ExitCode.DIFFERENCES, result.stderr
    lines = result.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), result.stdout
    at = next(i for i, line in enumerate(lines) if line.startswith("2026-01-01 00:03"))
    assert lines[at].split() == [
        "2026-01-01",
        "00:03",
        "differs",
        "high",
        repr(right.high * 2),
        repr(right.high),
    ]
    assert lines[at + 1].split() == ["volume", f"{right.volume * 1.5:.12g}", f"{right.volume:.12g}"]
    assert "error:" not in result.stdout and "error:" in result.stderr


def test_trade_counts_are_compared_where_the_exchange_gives_them(
    settings: Settings, cli: Any, clock: Any
) -> None:
    trades = trade_set()
    for kind in ("binance", "coinbase"):
        insert_ours(settings, MARKETS[kind], trades, m1={"trades": 99})
    with exchange("binance", trades) as fx:
        binance = run_verify(cli, fx, "-f", "json")
    with exchange("coinbase", trades) as fx:
        coinbase = run_verify(cli, fx, "-f", "json")
    assert binance.exit_code == ExitCode.DIFFERENCES
    assert [r["fields"] for r in json.loads(binance.stdout) if r["status"] == "differs"] == [
        {"trades": {"ours": 99, "theirs": 4}}
    ]
    assert coinbase.exit_code == 0, coinbase.stdout  # Coinbase publishes no trade count


@pytest.mark.parametrize("kind", KINDS)
def test_empty_minutes_are_empty_on_every_exchange(
    kind: str, settings: Settings, cli: Any, clock: Any
) -> None:
    trades = trade_set(empty=(2, 3, 4, 7))
    insert_ours(settings, MARKETS[kind], trades)
    with exchange(kind, trades) as fx:
        result = run_verify(cli, fx, "-f", "json")
    # the exchange's side: Binance and Kraken have zero-volume rows there, Coinbase none
    assert [(b.start_ms - T0) // MINUTE_MS for b in fx.bars(MARKETS[kind]) if not b.trade_count] == [
        2,
        3,
        4,
        7,
    ]
    assert result.exit_code == 0, result.stdout
    got = statuses(result)
    assert [m for m in range(10) if got[minute(m)] == "empty"] == [2, 3, 4, 7]


@pytest.mark.parametrize("kind", KINDS)
def test_the_forming_minute_is_never_judged(kind: str, settings: Settings, cli: Any, clock: Any) -> None:
    trades = trade_set()
    insert_ours(settings, MARKETS[kind], trades, m10={"close": 1.0, "volume": 123.0})  # a half-built candle
    with exchange(kind, trades) as fx:
        result = run_verify(cli, fx, "-f", "json", "--until", "2026-01-01T01:00:00Z")
    assert result.exit_code == 0, result.stdout
    assert sorted(statuses(result)) == [minute(m) for m in range(10)]


def test_kraken_last_row_is_forming_even_when_our_clock_says_closed(
    settings: Settings, cli: Any, clock: Any
) -> None:
    trades = trade_set()
    insert_ours(settings, MARKETS["kraken"], trades, m10={"close": 1.0})
    clock["ms"] = NOW + 2 * MINUTE_MS  # our minute 12; Kraken's newest row is still minute 10
    with exchange("kraken", trades) as fx:
        result = run_verify(cli, fx, "-f", "json")
    assert result.exit_code == 0, result.stdout
    assert sorted(statuses(result)) == [minute(m) for m in range(10)]
    assert "2026-01-01T00:10:00Z still forming" in result.stderr


@pytest.mark.parametrize("kind", KINDS)
def test_a_recorded_gap_makes_its_minutes_incomplete(
    kind: str, settings: Settings, cli: Any, clock: Any
) -> None:
    trades = trade_set()
    market = MARKETS[kind]
    insert_ours(settings, market, trades, m6={"volume": 0.5, "trades": 2})  # trades missing there
    insert_gap(settings, market, T0 + 6 * MINUTE_MS + 10_005, T0 + 7 * MINUTE_MS + 5)
    with exchange(kind, trades) as fx:
        result = run_verify(cli, fx, "-f", "json")
    assert result.exit_code == ExitCode.DIFFERENCES
    got = statuses(result)
    assert [m for m in range(10) if got[minute(m)] == "incomplete"] == [6, 7]
    assert "2 incomplete" in result.stderr


@pytest.mark.parametrize("kind", KINDS)
def test_missing_here_and_missing_there(kind: str, settings: Settings, cli: Any, clock: Any) -> None:
    trades = trade_set()
    insert_ours(settings, MARKETS[kind], trades, m8={}, m4={"close": 1.0})  # none for 8; one for empty 4
    with exchange(kind, trades) as fx:
        result = run_verify(cli, fx, "-f", "json")
    assert result.exit_code == ExitCode.DIFFERENCES
    got = statuses(result)
    assert (got[minute(8)], got[minute(4)], got[minute(5)]) == ("missing_here", "missing_there", "empty")


def test_json_has_every_judged_minute_of_every_symbol(settings: Settings, cli: Any, clock: Any) -> None:
    btc, eth = Market("binance", "BTC", "USDT"), Market("binance", "ETH", "USDT")
    trades = trade_set()
    insert_ours(settings, btc, trades)
    insert_ours(settings, eth, trades)
    with fake_exchange("binance", {btc: trades, eth: trades}, live=0, pace_s=None) as fx:
        result = run_verify(cli, fx, "-f", "json", symbols="BTC,ETH")
    assert result.exit_code == 0, result.stderr
    records = json.loads(result.stdout)
    assert [(r["symbol"], r["bucket"]) for r in records] == [
        (s, minute(m)) for s in ("BTC", "ETH") for m in range(10)
    ]
    assert {tuple(r) for r in records} == {("source", "symbol", "quote", "bucket", "status")}
    assert {r["quote"] for r in records} == {"USDT"}


@pytest.mark.parametrize(
    ("kind", "tried"), [("binance", "DOGEUSDT"), ("coinbase", "DOGE-USD"), ("kraken", "XDGUSD")]
)
def test_an_unknown_symbol_is_exit_2_in_the_exchange_spelling(
    kind: str, tried: str, settings: Settings, cli: Any, clock: Any
) -> None:
    with exchange(kind, trade_set()) as fx:
        result = run_verify(cli, fx, symbols="BTC,DOGE")
    assert result.exit_code == ExitCode.USAGE == 2
    assert result.stdout == ""
    quote = MARKETS[kind].quote
    assert f"{kind} has no market DOGE/{quote} (tried {tried})" in result.stderr


def test_kraken_range_older_than_its_720_minutes_is_said_not_missing(
    settings: Settings, cli: Any, clock: Any
) -> None:
    trades = trade_set(minutes=[*range(5), *range(795, 801)], empty=())
    insert_ours(settings, MARKETS["kraken"], trades)
    clock["ms"] = T0 + 800 * MINUTE_MS + 30_000
    with exchange("kraken", trades) as fx:
        result = run_verify(cli, fx, "-f", "json")
        too_old = run_verify(cli, fx, "--until", "2026-01-01T01:00:00Z")
    assert result.exit_code == 0, result.stdout
    got = statuses(result)
    assert min(got) == minute(800 - 718) and max(got) == minute(799)
    assert "missing_here" not in got.values()
    assert "kraken keeps only its 720 most recent 1-minute candles" in result.stderr
    assert too_old.exit_code == ExitCode.USAGE, too_old.stderr
    assert "is older" in too_old.stderr and too_old.stdout == ""


def test_an_unreachable_exchange_is_exit_3(
    settings: Settings, cli: Any, clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cryptoctl.exchanges import rest
    from tests.conftest import free_port

    fast = rest.RetryPolicy(max_attempts=2, backoff_initial_s=0.01, backoff_max_s=0.01, timeout_s=2)
    monkeypatch.setattr("cryptoctl.exchanges.rest.RetryPolicy", lambda: fast)  # every history's default
    result = cli(
        "verify", "--source", "binance", "-s", "BTC", "--rest-url", f"http://127.0.0.1:{free_port()}"
    )
    assert result.exit_code == ExitCode.SERVICE_UNAVAILABLE == 3
    assert "binance REST API at 127.0.0.1:" in result.stderr and "cannot connect" in result.stderr


# --- the pieces ----------------------------------------------------------------------


def test_vwap_matches_within_the_precision_the_exchange_published() -> None:
    ours = MinuteCandle(T0, 10.0, 12.0, 9.0, 11.0, 3.0, 7, 30306.14)
    kraken = ours._replace(vwap=30306.1, vwap_step=0.1)  # Kraken: the pair's decimals
    assert compare("BTC", [ours], [kraken], T0, T0 + MINUTE_MS)[0].status == "match"
    off = kraken._replace(vwap=30306.3)
    assert compare("BTC", [ours], [off], T0, T0 + MINUTE_MS)[0].status == "differs"


def test_plan_clamps_to_the_last_closed_minute_and_kraken_retention() -> None:
    assert plan("binance", T0 + 30_000, T0 + 10 * MINUTE_MS + 5, NOW + MINUTE_MS) == Plan(
        T0, T0 + 10 * MINUTE_MS
    )
    assert plan("binance", T0, NOW + 5 * MINUTE_MS, NOW) == Plan(T0, T0 + 10 * MINUTE_MS)
    later = T0 + 1000 * MINUTE_MS
    kraken = plan("kraken", T0, later, later)
    assert kraken.start_ms == later - 718 * MINUTE_MS and kraken.notes


def test_closed_range_stops_where_the_exchange_has_not_closed_a_minute() -> None:
    def c(m: int, closed: bool = True) -> ExchangeCandle:
        return ExchangeCandle(T0 + m * MINUTE_MS, 1.0, 1.0, 1.0, 1.0, 0.0, 0, closed)

    end = T0 + 10 * MINUTE_MS
    assert closed_range("binance", [c(m) for m in range(10)], T0, end) == (end, None)
    assert closed_range("kraken", [c(m) for m in range(8)] + [c(8, False)], T0, end)[0] == T0 + 8 * MINUTE_MS
    assert closed_range("binance", [c(m) for m in range(6)], T0, end)[0] == T0 + 6 * MINUTE_MS
    # Coinbase has no candle for a minute without trades: its candles say nothing of the end
    assert closed_range("coinbase", [c(m) for m in range(6)], T0, end) == (end, None)


def test_with_a_terminal_on_stderr_the_progress_stays_off_stdout(settings: Settings, clock: Any) -> None:
    from typer.testing import CliRunner

    from cryptoctl.cli.app import app
    from cryptoctl.cli.context import CliState

    trades = trade_set()
    insert_ours(settings, MARKETS["binance"], trades)
    with exchange("binance", trades) as fx:
        args = ["verify", "--source", "binance", "-s", "BTC", *SINCE, "--rest-url", fx.rest_url, "-f", "json"]
        result = CliRunner().invoke(app, args, obj=CliState(stderr_isatty=True, width=80))
    assert result.exit_code == 0, result.stderr
    assert len(json.loads(result.stdout)) == 10  # data only, not one byte of the bar
    assert "\x1b" not in result.stdout
    assert "binance BTC/USDT" in result.stderr and "10/10" in result.stderr  # the bar, drawn on stderr


def test_another_quote_than_the_default(settings: Settings, cli: Any, clock: Any) -> None:
    usdc = Market("binance", "BTC", "USDC")
    trades = trade_set()
    insert_ours(settings, usdc, trades)
    insert_ours(settings, MARKETS["binance"], trades, m1={"close": 1.0})  # BTC/USDT: not asked for
    with fake_exchange("binance", {usdc: trades}, live=0, pace_s=None) as fx:
        result = run_verify(cli, fx, "--quote", "usdc", "-f", "json")
    assert result.exit_code == 0, result.stderr
    assert {(r["quote"], r["status"]) for r in json.loads(result.stdout)} == {
        ("USDC", "match"),
        ("USDC", "empty"),
    }
