"""Renderers as pure functions: rows in, text out, rendered without a terminal."""

from __future__ import annotations

import io
from dataclasses import replace
from itertools import pairwise

import pytest
from rich.console import Console

from cryptoctl.db.queries import CandleRow, LatestPrice, Stats24h
from cryptoctl.render import numbers as fmt
from cryptoctl.render.chart import BODY, WICK, candle_chart, fit
from cryptoctl.render.serialize import (
    CANDLE_FIELDS,
    candle_record,
    price_record,
    stats_record,
    to_csv,
    to_json,
)
from cryptoctl.render.sparkline import sparkline
from cryptoctl.render.stack import short_address, status_view
from cryptoctl.render.tables import (
    INCOMPLETE_MARK,
    OPEN_MARK,
    candles_table,
    candles_tables,
    prices_table,
    stats_table,
)
from cryptoctl.stack.status import (
    ServiceStatus,
    StackStatus,
    TableStatus,
    TopicStatus,
)

T0 = 1_793_491_200_000  # 2026-11-01T00:00:00Z


def text_of(renderable: object, width: int = 120) -> str:
    console = Console(record=True, width=width, color_system=None, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def styled(renderable: object, width: int = 120) -> str:
    console = Console(record=True, width=width, color_system="truecolor", file=io.StringIO())
    console.print(renderable)
    return console.export_text(styles=True)


def candle(
    minute: int, o: float, h: float, low: float, c: float, *, final: bool = True, complete: bool = True,
    market: tuple[str, str, str] = ("binance", "BTC", "USDT"),
) -> CandleRow:
    return CandleRow(*market, "1m", T0 + minute * 60_000, o, h, low, c, 2.0, 3, o, None, final, complete)


def test_price_format_scales_with_magnitude() -> None:
    assert fmt.price(67012.345) == "67,012.35"
    assert fmt.price(145.234) == "145.23"
    assert fmt.price(1.5) == "1.5000"
    assert fmt.price(0.45678) == "0.4568"
    assert fmt.price(0.0000123456) == "0.00001235"
    assert fmt.price(None) == "—"


def test_pct_quantity_age() -> None:
    assert fmt.pct(1.234) == "+1.23%"
    assert fmt.pct(-0.5) == "-0.50%"
    assert fmt.pct(None) == "—"
    assert fmt.quantity(0) == "0"
    assert fmt.quantity(1.25) == "1.25"
    assert fmt.quantity(12345.67) == "12,345.7"
    assert fmt.quantity(2_500_000) == "2.50M"
    assert fmt.age(0.42) == "0.4s"
    assert fmt.age(42) == "42s"
    assert fmt.age(185) == "3m05s"
    assert fmt.age(7800) == "2h10m"


def test_sparkline() -> None:
    assert sparkline([]) == ""
    assert sparkline([1, 2, 3, 4, 5, 6, 7, 8]) == "▁▂▃▄▅▆▇█"
    assert sparkline([5, 5, 5]) == "▄▄▄"
    assert sparkline(range(100), width=4) == "▁▃▆█"


def test_json_exact() -> None:
    rows = [candle(0, 10.0, 12.0, 9.5, 11.0), candle(1, 11.0, 11.5, 10.0, 10.5, final=False, complete=False)]
    assert to_json(candle_record(c) for c in rows) == (
        "[\n"
        '  {\n    "symbol": "BTC",\n    "quote": "USDT",\n    "source": "binance",\n'
        '    "interval": "1m",\n    "bucket": "2026-11-01T00:00:00Z",\n'
        '    "open": 10.0,\n    "high": 12.0,\n    "low": 9.5,\n    "close": 11.0,\n'
        '    "volume": 2.0,\n    "trades": 3,\n    "avg": 10.0,\n    "vwap": null,\n'
        '    "final": true,\n    "complete": true\n  },\n'
        '  {\n    "symbol": "BTC",\n    "quote": "USDT",\n    "source": "binance",\n'
        '    "interval": "1m",\n    "bucket": "2026-11-01T00:01:00Z",\n'
        '    "open": 11.0,\n    "high": 11.5,\n    "low": 10.0,\n    "close": 10.5,\n'
        '    "volume": 2.0,\n    "trades": 3,\n    "avg": 11.0,\n    "vwap": null,\n'
        '    "final": false,\n    "complete": false\n  }\n'
        "]\n"
    )
    assert to_json([]) == "[]\n"


def test_csv_exact() -> None:
    rows = [candle(0, 10.0, 12.0, 9.5, 11.0), candle(1, 10.0, 12.0, 9.5, 11.0, complete=False)]
    assert to_csv((candle_record(c) for c in rows), CANDLE_FIELDS) == (
        "symbol,quote,source,interval,bucket,open,high,low,close,volume,trades,avg,vwap,final,complete\n"
        "BTC,USDT,binance,1m,2026-11-01T00:00:00Z,10.0,12.0,9.5,11.0,2.0,3,10.0,,true,true\n"
        "BTC,USDT,binance,1m,2026-11-01T00:01:00Z,10.0,12.0,9.5,11.0,2.0,3,10.0,,true,false\n"
    )
    assert to_csv([], ("a", "b")) == "a,b\n"


def test_price_and_stats_records() -> None:
    assert price_record(LatestPrice("ETH", 3400.5, T0 + 1500, "redis", "coinbase", "USD")) == {
        "symbol": "ETH",
        "quote": "USD",
        "source": "coinbase",
        "price": 3400.5,
        "time": "2026-11-01T00:00:01.500Z",
        "from": "redis",
    }
    s = Stats24h("kraken", "ETH", "EUR", 1.0, 2.0, 0.5, 1.5, 50.0, 3.0, 7, T0, T0 + 60_000)
    record = stats_record(s)
    assert (record["symbol"], record["quote"], record["source"]) == ("ETH", "EUR", "kraken")
    assert list(record)[:3] == ["symbol", "quote", "source"]
    assert record["first_bucket"] == "2026-11-01T00:00:00Z"
    assert record["last_bucket"] == "2026-11-01T00:01:00Z"


def test_candles_table_colours_rows_and_marks_open_candle() -> None:
    rows = [candle(0, 10.0, 12.0, 9.5, 11.0), candle(1, 11.0, 11.5, 10.0, 10.5, final=False)]
    text = text_of(candles_table(rows, title="1m candles"))
    assert text.startswith("binance BTC/USDT · 1m candles")  # the market: in the title
    lines = [line for line in text.splitlines() if "2026-11-01" in line]
    assert "2026-11-01 00:00" in lines[0] and "+10.00%" in lines[0]
    assert lines[0].rstrip().endswith("—")  # vwap is null: no volume
    assert lines[1].rstrip().endswith(OPEN_MARK) and "-4.55%" in lines[1]
    coloured = styled(candles_table(rows)).splitlines()
    up = next(line for line in coloured if "00:00" in line)
    down = next(line for line in coloured if "00:01" in line)
    assert "\x1b[32m" in up  # green
    assert "\x1b[31m" in down  # red


def test_candles_table_is_one_market() -> None:
    rows = [candle(0, 1.0, 1.0, 1.0, 1.0), candle(0, 1.0, 1.0, 1.0, 1.0, market=("coinbase", "BTC", "USD"))]
    with pytest.raises(ValueError, match="2 markets"):
        candles_table(rows)


BINANCE, COINBASE = ("binance", "BTC", "USDT"), ("coinbase", "BTC", "USD")
COINGECKO = ("coingecko", "BTC", "USD")


def test_candles_tables_one_section_per_market_with_the_legend() -> None:
    rows = [  # as the query gives them: by bucket, then market
        candle(0, 67012.35, 67112.35, 66912.35, 67050.0, market=BINANCE),
        candle(0, 67000.0, 67100.0, 66900.0, 67040.0, market=COINBASE, complete=False),
        candle(0, 67020.0, 67020.0, 67020.0, 67020.0, market=COINGECKO),
        candle(1, 67050.0, 67060.0, 67000.0, 67001.0, market=BINANCE, final=False),
    ]
    text = text_of(candles_tables(rows, interval="1m", width=80), width=80)
    titles = [line.rstrip() for line in text.splitlines() if "· 1m candles" in line]
    assert titles == ["binance BTC/USDT · 1m candles", "coinbase BTC/USD · 1m candles",
                      "coingecko BTC/USD · 1m candles"]
    sections = text.split("· 1m candles")
    assert sections[1].count("11-01 00:0") == 2  # binance: both its minutes, only its own
    assert sections[2].count("11-01 00:0") == 1 and "67,040.00" in sections[2]
    coinbase_row = next(line for line in sections[2].splitlines() if "67,040.00" in line)
    assert coinbase_row.rstrip().endswith(INCOMPLETE_MARK)
    assert [line.rstrip() for line in text.rstrip().splitlines()[-2:]] == [
        f"{OPEN_MARK} = open candle, still updating",
        f"{INCOMPLETE_MARK} = incomplete: the exchange feed missed trades of it (feed_gaps)",
    ]
    assert max(len(line) for line in text.splitlines()) <= 80 and "…" not in text
    complete = text_of(candles_tables(rows[:1] + rows[2:3], interval="5m"))
    assert "= open candle" not in complete and "incomplete" not in complete


def test_candles_table_fits_80_columns() -> None:
    rows = [
        CandleRow("binance", "BTC", "USDT", "1m", T0, 67012.35, 67112.35, 66912.35, 67050.0, 1.0, 12, 1.0,
                  1.0, False, False),
        CandleRow("binance", "BTC", "USDT", "1m", T0 + 60_000, 3400.0, 3401.0, 3399.0, 3398.0, 0.0, 12345,
                  1.0, None, True),
    ]
    text = text_of(candles_table(rows, width=80), width=80)
    btc = next(line for line in text.splitlines() if "67,050.00" in line)
    assert "11-01 00:00" in btc and "+0.06%" in btc and " 12 " in btc
    assert btc.rstrip().endswith(OPEN_MARK + INCOMPLETE_MARK) and "…" not in text
    assert max(len(line) for line in text.splitlines()) <= 80
    wide = text_of(candles_table(rows, width=140), width=140)
    assert "volume" in wide and "vwap" in wide and "2026-11-01 00:00" in wide


def test_prices_and_stats_tables() -> None:
    prices = text_of(prices_table([LatestPrice("BTC", 67000.0, T0, "postgres", "synthetic", "USD")]))
    assert "67,000.00" in prices and "2026-11-01 00:00:00" in prices and "postgres" in prices
    assert prices.splitlines()[1].split("┃")[1:4] == [" symbol ", " quote ", " source    "]
    stats = text_of(stats_table([Stats24h("coinbase", "SOL", "USD", 100.0, 120.0, 90.0, 110.0, 10.0, 5.0, 9,
                                          T0, T0)]))
    row = next(line for line in stats.splitlines() if "SOL" in line)
    assert row.split()[:3] == ["SOL", "USD", "coinbase"] and "+10.00%" in row and "120.00" in row


def test_prices_table_fits_80_columns_with_its_markets() -> None:
    prices = [
        LatestPrice("BTC", 100_012.35, T0, "postgres", "binance", "USDT"),
        LatestPrice("BTC", 100_001.5, T0, "postgres", "coinbase", "USD"),
        LatestPrice("BTC", 100_000.0, T0, "postgres", "coingecko", "USD"),
    ]
    text = text_of(prices_table(prices, width=80), width=80)
    assert max(len(line) for line in text.splitlines()) <= 80 and "…" not in text
    rows = [line.replace("│", " ").split() for line in text.splitlines() if "BTC" in line]
    assert [r[:4] for r in rows] == [["BTC", "USDT", "binance", "100,012.35"],
                                     ["BTC", "USD", "coinbase", "100,001.50"],
                                     ["BTC", "USD", "coingecko", "100,000.00"]]
    narrow = text_of(prices_table(prices, width=50), width=50)
    assert "100,012.35" in narrow and "…" not in narrow and "time" not in narrow


def test_chart_draws_bodies_wicks_axis() -> None:
    rows = [candle(0, 10.0, 14.0, 9.0, 13.0), candle(1, 13.0, 13.5, 8.0, 9.0)]
    text = text_of(candle_chart(rows, width=40, height=6, title="BTC"), width=40)
    lines = text.splitlines()
    assert lines[0] == "BTC"
    plot = lines[1:7]
    assert plot[0].startswith("14.0000 ┤")
    assert plot[-1].startswith(" 8.0000 ┤")
    gutter = plot[0].index("┤") + 1
    columns = [line[gutter:] for line in plot]
    slot = (40 - gutter) // 2
    first = "".join(col[slot // 2] for col in columns)  # wick at 14, body 13..10, wick to 9
    second = "".join(col[slot + slot // 2] for col in columns)
    assert first[0] == WICK and BODY in first and first[-1] == " "
    assert second[-1] == WICK and BODY in second
    assert lines[7].startswith("  vol 2 ┤") and lines[7].count("█") == 2 * 7  # equal volumes
    assert len(lines[-2]) == gutter + 2 * slot
    assert lines[-1].split() == ["2026-11-01", "00:00", "00:01"]  # the date said once
    assert all(len(line) <= 40 for line in lines)


def test_chart_keeps_newest_candles_that_fit() -> None:
    rows = [candle(i, 10.0, 11.0, 9.0, 10.5) for i in range(100)]
    shown, slot = fit(rows, 30)
    assert slot == 1 and len(shown) == 30 and shown[-1] is rows[-1]
    shown, slot = fit(rows[:10], 30)
    assert slot == 3 and len(shown) == 10
    text = text_of(candle_chart(rows, width=50, height=5), width=50)
    assert all(len(line) <= 50 for line in text.splitlines())


def test_chart_axis_shows_dates_when_they_fit() -> None:
    rows = [candle(i, 10.0, 11.0, 9.0, 10.5) for i in range(30)]
    last = text_of(candle_chart(rows, width=80, height=5), width=80).splitlines()[-1]
    assert last.split()[:2] == ["2026-11-01", "00:00"] and last.split()[-1] == "00:29"


def _walk(n: int, step_ms: int = 60_000) -> list[CandleRow]:
    """n candles of a price walk with varying volume; the newest one still open."""
    out, price = [], 100.0
    for i in range(n):
        close = price + (3 if i % 3 else -4) * (1 + i % 5) / 10
        out.append(CandleRow("binance", "BTC", "USDT", "1m", T0 + i * step_ms, price, max(price, close) + 0.5,
                             min(price, close) - 0.5, close, float(1 + i % 7), 3, price, None, i < n - 1))
        price = close
    return out


def _chart_parts(text: str) -> tuple[list[str], str, str, str]:
    lines = text.splitlines()
    return lines[:-3], lines[-3], lines[-2], lines[-1]  # plot, volume, axis, times


@pytest.mark.parametrize("width", [80, 120])
@pytest.mark.parametrize("n", [1, 2, 5])
def test_a_few_candles_use_the_width_and_labels_stay_under_the_chart(n: int, width: int) -> None:
    text = text_of(candle_chart(_walk(n), width=width, height=8), width=width)
    plot, volume, axis, times = _chart_parts(text)
    start = axis.index("└") + 1
    assert len(axis) > width - 8  # the chart spans the terminal, not 2 columns a candle
    assert all(len(line.rstrip()) <= width for line in text.splitlines())
    assert len(times.rstrip()) <= len(axis)  # labels end under the chart
    assert volume.lstrip().startswith("vol ")
    ticks = [i for i, ch in enumerate(axis) if ch == "┬"]
    assert len(ticks) == n if n <= 2 else len(ticks) >= 3  # first, last and some between
    for tick in ticks:
        assert any(line[tick] in (WICK, BODY) for line in plot)
        assert times[tick] != " "  # the label is under its tick
    assert times[start:].split()[0] == "2026-11-01"
    assert max(line.count(BODY) for line in plot) <= 7 * n  # bodies at most 7 wide


@pytest.mark.parametrize("width", [80, 120])
def test_many_candles_show_the_newest_with_regular_labels(width: int) -> None:
    rows = _walk(300)
    text = text_of(candle_chart(rows, width=width, height=8), width=width)
    _, volume, axis, times = _chart_parts(text)
    assert all(len(line.rstrip()) <= width for line in text.splitlines())
    assert len(times.rstrip()) <= len(axis) <= width
    shown = len(axis) - axis.index("└") - 1  # one column a candle
    assert times.split()[-1] == fmt.utc_clock(rows[-1].bucket_ms)[:5]  # the newest, last
    assert times.split()[:2] == ["2026-11-01", fmt.utc_clock(rows[-shown].bucket_ms)[:5]]
    ticks = [i for i, ch in enumerate(axis) if ch == "┬"]
    gaps = {b - a for a, b in pairwise(ticks[:-1])}
    assert len(ticks) >= 4 and len(gaps) == 1  # evenly spaced but for the last one
    bars = volume[volume.index("┤") + 1 :]
    assert len(bars) == shown and set(bars) <= set(" ▁▂▃▄▅▆▇█") and "█" in bars


def test_daily_candles_are_labelled_by_date_and_no_volume_no_volume_row() -> None:
    rows = [replace(c, volume=0.0) for c in _walk(5, step_ms=86_400_000)]
    text = text_of(candle_chart(rows, width=80, height=6), width=80)
    assert "vol" not in text
    assert text.splitlines()[-1].split() == ["2026-11-01", "11-02", "11-03", "11-04", "11-05"]


def test_chart_on_a_narrow_terminal_keeps_labels_inside() -> None:
    text = text_of(candle_chart(_walk(2), width=30, height=5), width=30)
    *_, axis, times = text.splitlines()
    assert len(times.rstrip()) <= len(axis) <= 30 and times.strip()


def test_stats_table_fits_an_80_column_terminal_without_losing_the_symbol() -> None:
    rows = [Stats24h(src, sym, quote, 65000.63, 65011.59, 64996.5, 65010.23, 0.0148, 412.1227, 334, T0, T0)
            for src, sym, quote in (("binance", "BTC", "USDT"), ("coingecko", "BTC", "USD"),
                                    ("coinbase", "DOGE", "USD"))]
    text = text_of(stats_table(rows, width=80), width=80)
    lines = [line for line in text.splitlines() if "65,010.23" in line]
    assert [line.split()[:3] for line in lines] == [
        ["BTC", "USDT", "binance"], ["BTC", "USD", "coingecko"], ["DOGE", "USD", "coinbase"]]
    assert "65,011.59" in lines[0] and "+0.01%" in lines[0] and "…" not in text
    assert max(len(line) for line in text.splitlines()) <= 80
    wide = text_of(stats_table(rows, width=120), width=120)
    assert "65,000.63" in wide and "trades" in wide and "412.1227" in wide


def _status() -> StackStatus:
    return StackStatus(
        [
            ServiceStatus("kafka", True, "127.0.0.1:39092", "1 broker", 3.21, 123456),
            ServiceStatus("postgres", True, "127.0.0.1:55432/cryptoctl", "16.4 + TimescaleDB",
                          12.5, 123457),
            ServiceStatus("redis", False, "redis://127.0.0.1:16379/0", detail="Connection refused"),
        ],
        [TopicStatus("crypto-prices", 6), TopicStatus("crypto-prices-dlq", 1)],
        [TableStatus("price_aggregates_1m", 12345)],
        "/home/someone/.local/state/cryptoctl",
        "5L6g3nShT-eMCtK6Tw4GWQ",
    )


def test_status_fits_80_columns_one_line_per_service() -> None:
    text = text_of(status_view(_status(), width=80), width=80)
    lines = text.splitlines()
    assert max(len(line.rstrip()) for line in lines) <= 80
    for label, address, about in [
        ("Kafka", "127.0.0.1:39092", "1 broker"),
        ("PostgreSQL", "127.0.0.1:55432/cryptoctl", "16.4 + TimescaleDB"),
        ("Redis", "127.0.0.1:16379/0", "Connection refused"),
    ]:
        line = next(line for line in lines if line.startswith(label))
        assert address in line and about in line, line
    assert "123456" not in text  # no room for PIDs: `cryptoctl up` shows them
    assert "Kafka cluster 5L6g3nShT-eMCtK6Tw4GWQ" in text
    assert "crypto-prices-dlq" in text and "12,345" in text


def test_status_at_120_columns_shows_pids() -> None:
    text = text_of(status_view(_status(), width=120), width=120)
    assert max(len(line.rstrip()) for line in text.splitlines()) <= 120
    kafka = next(line for line in text.splitlines() if line.startswith("Kafka "))
    assert "127.0.0.1:39092" in kafka and kafka.rstrip().endswith("123456")
    redis = next(line for line in text.splitlines() if line.startswith("Redis"))
    assert "down" in redis and redis.rstrip().endswith("-")


def test_status_a_long_error_wraps_in_its_own_column_only() -> None:
    status = _status()
    long = "no broker answered within 3.0s; is the broker up and listening on this address?"
    status.services[0] = ServiceStatus("kafka", False, "kafka.internal.example.com:9092",
                                       detail=long)
    text = text_of(status_view(status, width=80), width=80)
    assert max(len(line.rstrip()) for line in text.splitlines()) <= 80
    kafka = next(line for line in text.splitlines() if line.startswith("Kafka"))
    assert "kafka.internal.example.com:9092" in kafka
    header = text.splitlines()[1]
    column = slice(header.index("version / error"), header.index("rtt ms"))
    folded = [line[column] for line in text.splitlines()[3:9]]
    assert " ".join(" ".join(folded).split()) == long


def test_status_shows_redis_as_host_port_db() -> None:
    assert short_address("redis://127.0.0.1:16379/0") == "127.0.0.1:16379/0"
    assert short_address("redis://:***@cache.internal:6379/2") == "cache.internal:6379/2"
    assert short_address("rediss://me:***@cache:6380/0") == "rediss://me:***@cache:6380/0"
    assert short_address("127.0.0.1:39092") == "127.0.0.1:39092"


def test_no_chart_line_is_wider_than_the_terminal() -> None:
    """Random charts (prices over 18 orders of magnitude, volumes over 12) at random widths:
    the shown (newest) candles' price and volume labels can be wider than all candles'
    (before: 48 columns drawn at width 46); no line may pass the width."""
    import random

    rng = random.Random(5)
    for _ in range(900):
        n, width = rng.randint(1, 400), rng.randint(20, 200)
        base = 10 ** rng.uniform(-9, 7)
        prices = [base * 10 ** rng.uniform(-3, 3) if rng.random() < 0.3
                  else base * (1 + rng.random()) for _ in range(n)]
        rows = [CandleRow("binance", "BTC", "USDT", "1m", T0 + i * 60_000, p, p * 1.01, p * 0.99, p,
                          rng.random() * 10 ** rng.uniform(-3, 9), 3, p, None, True)
                for i, p in enumerate(prices)]
        text = text_of(candle_chart(rows, width=width, height=6), width=1000)
        assert max(len(line.rstrip()) for line in text.splitlines()) <= width, (n, width)
