"""`candles`, `prices`, `stats`: exact JSON and CSV for a known data set in the test schema.

Markets are (source, symbol, quote): BTC is stored for three of them (binance BTC/USDT,
coinbase BTC/USD, coingecko BTC/USD), each with candles of its own.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from cryptoctl.cache.client import Keys, market_id, redis_client
from cryptoctl.db.connection import connect
from cryptoctl.settings import Settings
from cryptoctl.times import iso_utc

T0 = 1_793_491_200_000  # 2026-11-01T00:00:00Z
M = 60_000
RANGE = ["--since", "2026-11-01T00:00:00Z", "--until", "2026-11-01T00:10:00Z"]

BINANCE = ("binance", "BTC", "USDT")
COINBASE = ("coinbase", "BTC", "USD")
COINGECKO = ("coingecko", "BTC", "USD")
ETH = ("coingecko", "ETH", "USD")

# market, minute, open, high, low, close, volume, trades, price_sum, pv_sum, final
CANDLES = [
    (COINGECKO, 0, 100.0, 110.0, 95.0, 105.0, 2.0, 4, 400.0, 200.0, True),
    (COINGECKO, 1, 105.0, 120.0, 104.0, 118.0, 2.0, 4, 440.0, 240.0, True),
    (COINGECKO, 5, 118.0, 119.0, 90.0, 91.0, 0.0, 2, 200.0, 0.0, False),
    (ETH, 0, 10.0, 11.0, 9.0, 9.5, 0.0, 1, 10.0, 0.0, True),
]
# The same minutes of two exchange markets of BTC, at other prices.
EXCHANGE_CANDLES = [
    (BINANCE, 0, 101.0, 111.0, 96.0, 106.0, 1.0, 3, 303.0, 101.0, True),
    (BINANCE, 1, 106.0, 107.0, 100.0, 100.5, 1.0, 2, 206.0, 100.0, True),
    (COINBASE, 0, 99.0, 109.0, 94.0, 104.0, 3.0, 5, 500.0, 300.0, True),
    (COINBASE, 2, 104.0, 108.0, 103.0, 107.0, 1.0, 1, 104.0, 104.0, True),
]


def dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def insert(settings: Settings, rows: list[tuple[Any, ...]], base_ms: int = T0) -> None:
    with connect(settings, autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO price_aggregates_1m (source, symbol, quote, bucket, open, high, low,"
            " close, volume, trades, price_sum, pv_sum, avg_price, vwap, open_time, close_time,"
            " final) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [
                (
                    *market,
                    dt(base_ms + m * M),
                    o,
                    h,
                    lo,
                    c,
                    v,
                    n,
                    ps,
                    pv,
                    ps / n,
                    pv / v if v else None,
                    dt(base_ms + m * M + 1000),
                    dt(base_ms + m * M + 59_000),
                    f,
                )
                for market, m, o, h, lo, c, v, n, ps, pv, f in rows
            ],
        )


def insert_gap(settings: Settings, market: tuple[str, str, str], after_ms: int, before_ms: int) -> None:
    """A feed gap: the market's trades between these two times could not be fetched."""
    with connect(settings, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO feed_gaps (source, symbol, quote, first_trade_id, last_trade_id,"
            " after_time, before_time, reason) VALUES (%s, %s, %s, 1001, 1009, %s, %s,"
            " 'REST history gave up')",
            (*market, dt(after_ms), dt(before_ms)),
        )


@pytest.fixture
def stored(settings: Settings) -> Settings:
    insert(settings, CANDLES)
    return settings


@pytest.fixture
def markets(settings: Settings) -> Settings:
    """Three BTC markets (and one ETH)."""
    insert(settings, CANDLES + EXCHANGE_CANDLES)
    return settings


def test_candles_5m_json_exact(cli: Any, stored: Settings) -> None:
    result = cli("candles", *RANGE, "--interval", "5m", "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    assert json.loads(result.stdout) == [
        {
            "symbol": "BTC",
            "quote": "USD",
            "source": "coingecko",
            "interval": "5m",
            "bucket": "2026-11-01T00:00:00Z",
            "open": 100.0,
            "high": 120.0,
            "low": 95.0,
            "close": 118.0,
            "volume": 4.0,
            "trades": 8,
            "avg": 105.0,
            "vwap": 110.0,
            "final": True,
            "complete": True,
        },
        {
            "symbol": "ETH",
            "quote": "USD",
            "source": "coingecko",
            "interval": "5m",
            "bucket": "2026-11-01T00:00:00Z",
            "open": 10.0,
            "high": 11.0,
            "low": 9.0,
            "close": 9.5,
            "volume": 0.0,
            "trades": 1,
            "avg": 10.0,
            "vwap": None,
            "final": True,
            "complete": True,
        },
        {
            "symbol": "BTC",
            "quote": "USD",
            "source": "coingecko",
            "interval": "5m",
            "bucket": "2026-11-01T00:05:00Z",
            "open": 118.0,
            "high": 119.0,
            "low": 90.0,
            "close": 91.0,
            "volume": 0.0,
            "trades": 2,
            "avg": 100.0,
            "vwap": None,
            "final": False,
            "complete": True,
        },
    ]
    assert result.stdout.startswith('[\n  {\n    "symbol": "BTC",\n    "quote": "USD",\n')


def test_candles_csv_exact(cli: Any, stored: Settings) -> None:
    result = cli("candles", *RANGE, "-s", "btc", "--interval", "1m", "--format", "csv")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == (
        "symbol,quote,source,interval,bucket,open,high,low,close,volume,trades,avg,vwap,final,complete\n"
        "BTC,USD,coingecko,1m,2026-11-01T00:00:00Z,100.0,110.0,95.0,105.0,2.0,4,100.0,100.0,true,true\n"
        "BTC,USD,coingecko,1m,2026-11-01T00:01:00Z,105.0,120.0,104.0,118.0,2.0,4,110.0,120.0,true,true\n"
        "BTC,USD,coingecko,1m,2026-11-01T00:05:00Z,118.0,119.0,90.0,91.0,0.0,2,100.0,,false,true\n"
    )


def test_candles_table_and_chart(cli: Any, stored: Settings) -> None:
    table = cli("candles", *RANGE, "--symbol", "BTC")
    assert table.exit_code == 0
    assert "11-01 00:05" in table.stdout and "● = open candle" in table.stdout
    chart = cli("candles", *RANGE, "--symbol", "BTC", "--chart", "--height", "6")
    assert chart.exit_code == 0
    assert "coingecko BTC/USD · 1m · 3 candles" in chart.stdout and "█" in chart.stdout


def test_candles_empty_and_bad_times(cli: Any, settings: Settings) -> None:
    empty = cli("candles", *RANGE)
    assert empty.exit_code == 0 and empty.stdout == ""
    assert "no candles for any symbol between 2026-11-01T00:00:00Z" in empty.stderr
    empty_json = cli("candles", *RANGE, "-f", "json")
    assert empty_json.exit_code == 0 and empty_json.stdout == "[]\n"
    bad = cli("candles", "--since", "yesterday-ish")
    assert bad.exit_code == 2 and bad.stdout == ""
    assert "e.g. 1h" in bad.stderr and "2026-11-01T00:00:00Z" in bad.stderr
    backwards = cli("candles", "--since", "1h", "--until", "2h")
    assert backwards.exit_code == 2
    assert cli("candles", "--interval", "2m").exit_code == 2


def cache_price(settings: Settings, market: tuple[str, str, str], price: float, ts: int) -> None:
    """A latest price in Redis as the aggregator writes it (document + markets set)."""
    source, symbol, quote = market
    client, keys = redis_client(settings), Keys(settings.redis_prefix)
    key = (symbol, source, quote)
    doc = {"symbol": symbol, "price": price, "ts": ts, "source": source, "quote": quote}
    client.set(keys.latest(key), orjson.dumps(doc))
    client.sadd(keys.markets, market_id(key))


def test_prices_from_redis(cli: Any, stored: Settings) -> None:
    cache_price(stored, COINBASE, 91.5, T0 + 1500)
    cache_price(stored, BINANCE, 91.75, T0 + 1000)
    cache_price(stored, ("kraken", "SOL", "EUR"), 150.25, T0)
    result = cli("prices", "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == [
        {"symbol": "BTC", "quote": "USDT", "source": "binance", "price": 91.75,
         "time": "2026-11-01T00:00:01Z", "from": "redis"},
        {"symbol": "BTC", "quote": "USD", "source": "coinbase", "price": 91.5,
         "time": "2026-11-01T00:00:01.500Z", "from": "redis"},
        {"symbol": "SOL", "quote": "EUR", "source": "kraken", "price": 150.25,
         "time": "2026-11-01T00:00:00Z", "from": "redis"},
    ]
    csv = cli("prices", "-s", "SOL", "--format", "csv")
    assert csv.stdout == (
        "symbol,quote,source,price,time,from\nSOL,EUR,kraken,150.25,2026-11-01T00:00:00Z,redis\n")
    one = cli("prices", "-s", "BTC", "--source", "Coinbase", "--format", "csv")
    assert one.stdout.splitlines()[1:] == ["BTC,USD,coinbase,91.5,2026-11-01T00:00:01.500Z,redis"]
    usdt = cli("prices", "--quote", "usdt", "--format", "csv")
    assert usdt.stdout.splitlines()[1:] == ["BTC,USDT,binance,91.75,2026-11-01T00:00:01Z,redis"]


def test_prices_fall_back_to_postgres(cli: Any, markets: Settings, monkeypatch: Any) -> None:
    empty = cli("prices", "--format", "csv")  # nothing in Redis under this prefix
    assert empty.exit_code == 0
    assert empty.stdout == (
        "symbol,quote,source,price,time,from\n"
        "BTC,USDT,binance,100.5,2026-11-01T00:01:59Z,postgres\n"
        "BTC,USD,coinbase,107.0,2026-11-01T00:02:59Z,postgres\n"
        "BTC,USD,coingecko,91.0,2026-11-01T00:05:59Z,postgres\n"
        "ETH,USD,coingecko,9.5,2026-11-01T00:00:59Z,postgres\n"
    )
    assert "no latest prices in Redis; read PostgreSQL v_latest_prices" in empty.stderr
    # A market Redis does not have is read from PostgreSQL, filtered the same way.
    cache_price(markets, BINANCE, 100.25, T0 + 2 * M)
    filtered = cli("prices", "--source", "COINBASE", "--quote", "usd", "--format", "csv")
    assert filtered.stdout.splitlines()[1:] == ["BTC,USD,coinbase,107.0,2026-11-01T00:02:59Z,postgres"]
    monkeypatch.setenv("CRYPTOCTL_REDIS_URL", "redis://127.0.0.1:1/0")
    down = cli("prices", "--format", "json")
    assert down.exit_code == 0
    assert [(p["symbol"], p["source"]) for p in json.loads(down.stdout)] == [
        ("BTC", "binance"), ("BTC", "coinbase"), ("BTC", "coingecko"), ("ETH", "coingecko")]
    assert "Redis is not reachable at redis://127.0.0.1:1/0" in down.stderr
    none = cli("prices", "--source", "kraken")
    assert none.exit_code == 0 and none.stdout == ""
    assert "no prices yet for any symbol from kraken" in none.stderr


def test_stats_json_and_csv(cli: Any, settings: Settings) -> None:
    now_ms = int(time.time() * 1000)
    base = now_ms - now_ms % M - 10 * M
    insert(
        settings,
        [
            (COINGECKO, 0, 100.0, 130.0, 90.0, 120.0, 1.0, 3, 330.0, 110.0, True),
            (COINGECKO, 1, 120.0, 125.0, 80.0, 125.0, 2.0, 2, 240.0, 240.0, True),
            (BINANCE, 1, 200.0, 210.0, 190.0, 190.0, 4.0, 7, 1400.0, 800.0, True),
            (ETH, 1, 10.0, 10.0, 10.0, 10.0, 0.0, 1, 10.0, 0.0, False),
        ],
        base_ms=base,
    )
    result = cli("stats", "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == [
        {
            "symbol": "BTC",
            "quote": "USDT",
            "source": "binance",
            "open": 200.0,
            "high": 210.0,
            "low": 190.0,
            "last": 190.0,
            "change_pct": -5.0,
            "volume": 4.0,
            "trades": 7,
            "first_bucket": iso_utc(base + M),
            "last_bucket": iso_utc(base + M),
        },
        {
            "symbol": "BTC",
            "quote": "USD",
            "source": "coingecko",
            "open": 100.0,
            "high": 130.0,
            "low": 80.0,
            "last": 125.0,
            "change_pct": 25.0,
            "volume": 3.0,
            "trades": 5,
            "first_bucket": iso_utc(base),
            "last_bucket": iso_utc(base + M),
        },
        {
            "symbol": "ETH",
            "quote": "USD",
            "source": "coingecko",
            "open": 10.0,
            "high": 10.0,
            "low": 10.0,
            "last": 10.0,
            "change_pct": 0.0,
            "volume": 0.0,
            "trades": 1,
            "first_bucket": iso_utc(base + M),
            "last_bucket": iso_utc(base + M),
        },
    ]
    csv = cli("stats", "-s", "ETH", "--format", "csv")
    assert csv.stdout == (
        "symbol,quote,source,open,high,low,last,change_pct,volume,trades,first_bucket,last_bucket\n"
        f"ETH,USD,coingecko,10.0,10.0,10.0,10.0,0.0,0.0,1,{iso_utc(base + M)},{iso_utc(base + M)}\n"
    )
    usdt = cli("stats", "-s", "BTC", "--quote", "USDT", "--format", "csv")
    assert [line.split(",")[:4] for line in usdt.stdout.splitlines()[1:]] == [
        ["BTC", "USDT", "binance", "200.0"]]
    gecko = cli("stats", "--source", "coingecko", "--format", "csv")
    assert [line.split(",")[:3] for line in gecko.stdout.splitlines()[1:]] == [
        ["BTC", "USD", "coingecko"], ["ETH", "USD", "coingecko"]]
    table = cli("stats")
    assert "+25.00%" in table.stdout and "-5.00%" in table.stdout


def test_prices_and_stats_tables_fit_80_columns(cli: Any, settings: Settings, monkeypatch: Any) -> None:
    now_ms = int(time.time() * 1000)
    base = now_ms - now_ms % M - 5 * M
    insert(settings, [(market, 0, 67012.35, 68123.45, 66001.5, 67500.25, 1234.5678, 98765, 1e9, 1e8, True)
                      for market in (BINANCE, COINBASE, COINGECKO)], base_ms=base)
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("CRYPTOCTL_REDIS_URL", "redis://127.0.0.1:1/0")  # prices from PostgreSQL
    for command in ("prices", "stats"):
        result = cli(command)
        assert result.exit_code == 0, result.stderr
        lines = result.stdout.splitlines()
        assert max(len(line) for line in lines) <= 80 and "…" not in result.stdout, command
        rows = [line.replace("│", " ").split() for line in lines if "BTC" in line]
        assert [r[:3] for r in rows] == [["BTC", "USDT", "binance"], ["BTC", "USD", "coinbase"],
                                         ["BTC", "USD", "coingecko"]], command
        assert all("67,500.25" in r for r in rows), command


def test_three_markets_of_one_symbol_have_three_candle_sets(cli: Any, markets: Settings) -> None:
    result = cli("candles", *RANGE, "-s", "BTC", "--format", "csv")
    assert result.exit_code == 0, result.stderr
    rows = [line.split(",") for line in result.stdout.splitlines()[1:]]
    assert [(r[2], r[1], r[4][11:16], r[5], r[8]) for r in rows] == [  # oldest first, then market
        ("binance", "USDT", "00:00", "101.0", "106.0"),
        ("coinbase", "USD", "00:00", "99.0", "104.0"),
        ("coingecko", "USD", "00:00", "100.0", "105.0"),
        ("binance", "USDT", "00:01", "106.0", "100.5"),
        ("coingecko", "USD", "00:01", "105.0", "118.0"),
        ("coinbase", "USD", "00:02", "104.0", "107.0"),
        ("coingecko", "USD", "00:05", "118.0", "91.0"),
    ]
    rolled = json.loads(cli("candles", *RANGE, "-s", "BTC", "-i", "5m", "-f", "json").stdout)
    assert [(c["source"], c["bucket"][11:16], c["open"], c["close"], c["trades"]) for c in rolled] == [
        ("binance", "00:00", 101.0, 100.5, 5),
        ("coinbase", "00:00", 99.0, 107.0, 6),
        ("coingecko", "00:00", 100.0, 118.0, 8),
        ("coingecko", "00:05", 118.0, 91.0, 2),
    ]


@pytest.mark.parametrize(
    ("flags", "wanted"),
    [
        (["--source", "binance"], {("binance", "USDT")}),
        (["--source", "Coinbase"], {("coinbase", "USD")}),  # any case
        (["--quote", "usd"], {("coinbase", "USD"), ("coingecko", "USD")}),
        (["--source", "coingecko", "--quote", "USD"], {("coingecko", "USD")}),
        (["--source", "binance", "--quote", "USD"], set()),
    ],
)
def test_candles_source_and_quote_filters(
    cli: Any, markets: Settings, flags: list[str], wanted: set[tuple[str, str]]
) -> None:
    result = cli("candles", *RANGE, "-s", "BTC", *flags, "--format", "json")
    assert result.exit_code == 0, result.stderr
    got = json.loads(result.stdout)
    assert {(c["source"], c["quote"]) for c in got} == wanted
    assert all(c["symbol"] == "BTC" for c in got)
    if not wanted:
        assert got == [] and "no candles for BTC from binance in USD between" in result.stderr


def test_candles_bad_quote_is_a_usage_error(cli: Any, settings: Settings) -> None:
    result = cli("candles", "--quote", "US-D")
    assert result.exit_code == 2 and result.stdout == ""
    assert "no currency code (e.g. USD, USDT)" in result.stderr


def test_a_feed_gap_marks_its_candles_incomplete(cli: Any, markets: Settings) -> None:
    # coinbase missed trades between 00:00:40 and 00:02:05: its minutes 0 (and 1, which has
    # no candle) and 2 are incomplete; no other market's are.
    insert_gap(markets, COINBASE, T0 + 40_000, T0 + 2 * M + 5_000)
    minutes = json.loads(cli("candles", *RANGE, "-s", "BTC", "-f", "json").stdout)
    assert [(c["source"], c["bucket"][11:16]) for c in minutes if not c["complete"]] == [
        ("coinbase", "00:00"), ("coinbase", "00:02")]
    assert sum(c["complete"] for c in minutes) == 5
    rolled = cli("candles", *RANGE, "-i", "5m", "-f", "csv").stdout.splitlines()
    assert rolled[0].endswith(",final,complete")
    assert [(r.split(",")[2], r.split(",")[-1]) for r in rolled[1:]] == [
        ("binance", "true"), ("coinbase", "false"), ("coingecko", "true"), ("coingecko", "true"),
        ("coingecko", "true")]
    table = cli("candles", *RANGE, "-s", "BTC", "--source", "coinbase")
    marked = [line for line in table.stdout.splitlines() if line.rstrip().endswith("!")]
    assert len(marked) == 2 and "incomplete: the exchange feed missed trades" in table.stdout


def test_candles_table_has_one_section_per_market_at_80_columns(
    cli: Any, markets: Settings, monkeypatch: Any
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    result = cli("candles", *RANGE, "-s", "BTC")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.rstrip() for line in lines if "candles" in line] == [
        "binance BTC/USDT · 1m candles", "coinbase BTC/USD · 1m candles",
        "coingecko BTC/USD · 1m candles"]
    assert max(len(line) for line in lines) <= 80 and "…" not in result.stdout


def test_a_chart_of_several_markets_asks_for_one(cli: Any, markets: Settings) -> None:
    result = cli("candles", *RANGE, "-s", "BTC", "--chart")
    assert result.exit_code == 2 and result.stdout == ""
    assert (
        "--chart draws one market at a time, and BTC has 3 here: binance BTC/USDT, "
        "coinbase BTC/USD, coingecko BTC/USD" in " ".join(result.stderr.split())
    )
    assert "--source binance --quote USDT" in result.stderr
    one = cli("candles", *RANGE, "-s", "BTC", "--source", "binance", "--chart", "--height", "6")
    assert one.exit_code == 0, one.stderr
    assert one.stdout.splitlines()[0] == "binance BTC/USDT · 1m · 2 candles"
    # One market per symbol: a chart each.
    both = cli("candles", *RANGE, "--source", "coingecko", "--chart", "--height", "6")
    assert both.exit_code == 0, both.stderr
    assert [line for line in both.stdout.splitlines() if "candles" in line] == [
        "coingecko BTC/USD · 1m · 3 candles", "coingecko ETH/USD · 1m · 1 candles"]


@pytest.mark.parametrize("fmt", ["json", "csv", "table"])
def test_candles_into_a_closed_pipe_exit_0_quietly(stored: Settings, fmt: str) -> None:
    from tests.cli.test_closed_pipe import into_closed_pipe
    from tests.helpers import stack_env

    code, err = into_closed_pipe("candles", *RANGE, "--format", fmt, env=stack_env(stored))
    assert (code, err) == (0, "")


@pytest.mark.parametrize("columns", [80, 120])
def test_candles_chart_spans_the_terminal(
    cli: Any, stored: Settings, monkeypatch: pytest.MonkeyPatch, columns: int
) -> None:
    monkeypatch.setenv("COLUMNS", str(columns))
    result = cli("candles", *RANGE, "--symbol", "BTC", "--interval", "5m", "--chart", "--height", "6")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.rstrip("\n").splitlines()
    assert lines[0] == "coingecko BTC/USD · 5m · 2 candles"
    axis, times = lines[-2], lines[-1]
    assert columns - 8 < len(axis) <= columns and axis.count("┬") == 2
    assert times.split() == ["2026-11-01", "00:00", "00:05"] and len(times) <= len(axis)
    assert lines[-3].lstrip().startswith("vol 4 ┤")
