"""`candles`, `prices`, `stats`: exact JSON and CSV for a known data set in the test schema."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from cryptoctl.cache.client import Keys, redis_client
from cryptoctl.db.connection import connect
from cryptoctl.durations import iso_utc
from cryptoctl.settings import Settings

T0 = 1_793_491_200_000  # 2026-11-01T00:00:00Z
M = 60_000
RANGE = ["--since", "2026-11-01T00:00:00Z", "--until", "2026-11-01T00:10:00Z"]

# symbol, minute, open, high, low, close, volume, trades, price_sum, pv_sum, final
CANDLES = [
    ("BTC", 0, 100.0, 110.0, 95.0, 105.0, 2.0, 4, 400.0, 200.0, True),
    ("BTC", 1, 105.0, 120.0, 104.0, 118.0, 2.0, 4, 440.0, 240.0, True),
    ("BTC", 5, 118.0, 119.0, 90.0, 91.0, 0.0, 2, 200.0, 0.0, False),
    ("ETH", 0, 10.0, 11.0, 9.0, 9.5, 0.0, 1, 10.0, 0.0, True),
]


def dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def insert(settings: Settings, rows: list[tuple[Any, ...]], base_ms: int = T0) -> None:
    with connect(settings, autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO price_aggregates_1m (symbol, bucket, open, high, low, close, volume,"
            " trades, price_sum, pv_sum, avg_price, vwap, open_time, close_time, final)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [
                (
                    s,
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
                for s, m, o, h, lo, c, v, n, ps, pv, f in rows
            ],
        )


@pytest.fixture
def stored(settings: Settings) -> Settings:
    insert(settings, CANDLES)
    return settings


def test_candles_5m_json_exact(cli: Any, stored: Settings) -> None:
    result = cli("candles", *RANGE, "--interval", "5m", "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    assert json.loads(result.stdout) == [
        {
            "symbol": "BTC",
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
        },
        {
            "symbol": "ETH",
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
        },
        {
            "symbol": "BTC",
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
        },
    ]
    assert result.stdout.startswith('[\n  {\n    "symbol": "BTC",\n')


def test_candles_csv_exact(cli: Any, stored: Settings) -> None:
    result = cli("candles", *RANGE, "-s", "btc", "--interval", "1m", "--format", "csv")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == (
        "symbol,interval,bucket,open,high,low,close,volume,trades,avg,vwap,final\n"
        "BTC,1m,2026-11-01T00:00:00Z,100.0,110.0,95.0,105.0,2.0,4,100.0,100.0,true\n"
        "BTC,1m,2026-11-01T00:01:00Z,105.0,120.0,104.0,118.0,2.0,4,110.0,120.0,true\n"
        "BTC,1m,2026-11-01T00:05:00Z,118.0,119.0,90.0,91.0,0.0,2,100.0,,false\n"
    )


def test_candles_table_and_chart(cli: Any, stored: Settings) -> None:
    table = cli("candles", *RANGE, "--symbol", "BTC")
    assert table.exit_code == 0
    assert "11-01 00:05" in table.stdout and "● = open candle" in table.stdout
    chart = cli("candles", *RANGE, "--symbol", "BTC", "--chart", "--height", "6")
    assert chart.exit_code == 0
    assert "BTC · 1m · 3 candles" in chart.stdout and "█" in chart.stdout


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


def test_prices_from_redis(cli: Any, stored: Settings) -> None:
    client, keys = redis_client(stored), Keys(stored.redis_prefix)
    client.set(keys.latest("BTC"), orjson.dumps({"symbol": "BTC", "price": 91.5, "ts": T0 + 1500}))
    client.set(keys.latest("SOL"), orjson.dumps({"symbol": "SOL", "price": 150.25, "ts": T0}))
    client.sadd(keys.symbols, "BTC", "SOL")
    result = cli("prices", "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == [
        {"symbol": "BTC", "price": 91.5, "time": "2026-11-01T00:00:01.500Z", "source": None, "from": "redis"},
        {"symbol": "SOL", "price": 150.25, "time": "2026-11-01T00:00:00Z", "source": None, "from": "redis"},
    ]
    csv = cli("prices", "-s", "SOL", "--format", "csv")
    assert csv.stdout == "symbol,price,time,source,from\nSOL,150.25,2026-11-01T00:00:00Z,,redis\n"


def test_prices_fall_back_to_postgres(cli: Any, stored: Settings, monkeypatch: Any) -> None:
    empty = cli("prices", "--format", "csv")  # nothing in Redis under this prefix
    assert empty.exit_code == 0
    assert empty.stdout == (
        "symbol,price,time,source,from\n"
        "BTC,91.0,2026-11-01T00:05:59Z,,postgres\n"
        "ETH,9.5,2026-11-01T00:00:59Z,,postgres\n"
    )
    assert "no latest prices in Redis; read PostgreSQL v_latest_prices" in empty.stderr
    monkeypatch.setenv("CRYPTOCTL_REDIS_URL", "redis://127.0.0.1:1/0")
    down = cli("prices", "--format", "json")
    assert down.exit_code == 0
    assert [p["symbol"] for p in json.loads(down.stdout)] == ["BTC", "ETH"]
    assert "Redis is not reachable at redis://127.0.0.1:1/0" in down.stderr


def test_stats_json_and_csv(cli: Any, settings: Settings) -> None:
    now_ms = int(time.time() * 1000)
    base = now_ms - now_ms % M - 10 * M
    insert(
        settings,
        [
            ("BTC", 0, 100.0, 130.0, 90.0, 120.0, 1.0, 3, 330.0, 110.0, True),
            ("BTC", 1, 120.0, 125.0, 80.0, 125.0, 2.0, 2, 240.0, 240.0, True),
            ("ETH", 1, 10.0, 10.0, 10.0, 10.0, 0.0, 1, 10.0, 0.0, False),
        ],
        base_ms=base,
    )
    result = cli("stats", "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == [
        {
            "symbol": "BTC",
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
        "symbol,open,high,low,last,change_pct,volume,trades,first_bucket,last_bucket\n"
        f"ETH,10.0,10.0,10.0,10.0,0.0,0.0,1,{iso_utc(base + M)},{iso_utc(base + M)}\n"
    )
    table = cli("stats")
    assert "+25.00%" in table.stdout


@pytest.mark.parametrize("fmt", ["json", "csv", "table"])
def test_candles_into_a_closed_pipe_exit_0_quietly(stored: Settings, fmt: str) -> None:
    from tests.core.test_closed_pipe import into_closed_pipe
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
    assert lines[0] == "BTC · 5m · 2 candles"
    axis, times = lines[-2], lines[-1]
    assert columns - 8 < len(axis) <= columns and axis.count("┬") == 2
    assert times.split() == ["2026-11-01", "00:00", "00:05"] and len(times) <= len(axis)
    assert lines[-3].lstrip().startswith("vol 4 ┤")
