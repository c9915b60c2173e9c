"""The watch display at the widths of real terminals, and its 1-minute candle column."""

from __future__ import annotations

import io
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from cryptoctl.cache.documents import CandleDoc
from cryptoctl.render.watch import (
    OPTIONAL,
    STALE_MARK,
    candle_text,
    choose_columns,
    watch_view,
)
from cryptoctl.tick import Tick
from cryptoctl.watch.state import WatchState

T0 = 1_793_491_200_000  # 2026-11-01T00:00:00Z
SYNTH = "synthetic", "USD"
BASE = {"BTC": 67000.0, "ETH": 3400.0, "SOL": 150.0, "DOGE": 0.1234}
LAST = {"BTC": "67,009.75", "ETH": "3,409.75", "SOL": "159.75", "DOGE": "0.5134"}


def busy_state() -> WatchState:
    """Four symbols after 40 ticks each (a full sparkline), BTC with a current candle."""
    state = WatchState.create(0.0)
    for i in range(40):
        for sym, base in BASE.items():
            step = 0.01 if sym == "DOGE" else 0.25
            extra = {"change_24h_pct": -12.5}
            state.apply(Tick(sym, round(base + i * step, 4), T0 + 90_000 + i, "synthetic", T0, extra=extra),
                        i * 0.1)  # fmt: skip
    state.candles = {
        ("BTC", *SYNTH): candle(T0 + 60_000, 67000.0, 67012.5, 66990.25, 67009.75, trades=1234),
        ("ETH", *SYNTH): candle(T0, 3400.0, 3410.0, 3399.0, 3405.0, trades=7),  # a minute behind
    }
    return state


def candle(bucket: int, o: float, h: float, low: float, c: float, trades: int = 3) -> CandleDoc:
    return CandleDoc("X", bucket, o, h, low, c, 0.0, trades, c, None, bucket, bucket + 1, "open", False)


def screen(width: int, *, styles: bool = False) -> str:
    console = Console(record=True, width=width, color_system="truecolor" if styles else None,
                      file=io.StringIO())  # fmt: skip
    console.print(watch_view(busy_state(), 4.0, title="cryptoctl watch", width=width))
    return console.export_text(styles=styles)


def row(text: str, symbol: str) -> str:
    return next(line for line in text.splitlines() if re.match(rf"\W*{symbol}\b", line))


def header(text: str) -> list[str]:
    line = next(line for line in text.splitlines() if "market" in line)
    return [cell.strip() for cell in re.split(r"[┃│]", line) if cell.strip()]


@pytest.mark.parametrize("width", [60, 80, 100, 110, 120, 140, 160, 200])
def test_every_row_names_its_symbol_and_shows_the_whole_price(width: int) -> None:
    text = screen(width)
    for sym, price in LAST.items():
        line = row(text, sym)
        assert re.match(rf"│ {sym}\s+│\s+{re.escape(price)} ", line), line
    table = [line for line in text.splitlines() if line[:1] in "┏┃┡│└"]
    assert all(len(line) <= width for line in table)
    assert not any("…" in line for line in table)


def test_lesser_columns_go_first_on_a_narrow_terminal() -> None:
    assert header(screen(80)) == ["market", "price", "chg", "age", "1m candle"]
    assert "67,009.75" in row(screen(80), "BTC") and "-12.50%" not in screen(80)
    wide = header(screen(120))
    assert wide[:6] == ["market", "price", "chg", "24h", "high", "low"] and "1m candle" in wide
    assert "│ 67,009.75 │ 67,000.00 │" in row(screen(120), "BTC")  # session high and low
    widest = screen(220)
    assert header(widest) == ["market", "price", "chg", "24h", "high", "low", "ticks", "t/s", "age",
                              "recent", "1m candle"]  # fmt: skip
    assert "00:01 O 67,000.00 H 67,012.50 L 66,990.25 C 67,009.75 · 1234" in row(widest, "BTC")


_NATURAL = {"market": 6, "price": 11, "chg": 7, "24h": 7, "high": 9, "low": 9, "ticks": 6, "t/s": 5,
            "age": 5, "recent": 24, "1m": 22, "1m full": 58}  # fmt: skip


def _with_short_candle(columns: list[str]) -> set[str]:
    """The full candle column is the short one and more."""
    return set(columns) | ({"1m"} if "1m full" in columns else set())


@given(st.integers(0, 300), st.integers(0, 300))
def test_a_wider_terminal_never_shows_fewer_columns(a: int, b: int) -> None:
    narrow, wide = choose_columns(_NATURAL, min(a, b)), choose_columns(_NATURAL, max(a, b))
    assert narrow[:2] == ["market", "price"]
    assert _with_short_candle(narrow) <= _with_short_candle(wide)
    assert not {"1m", "1m full"} <= set(wide)
    # What is left out is always the end of OPTIONAL: never a more useful column first.
    shown = [group for group in OPTIONAL if set(group) <= _with_short_candle(narrow)]
    assert list(OPTIONAL[: len(shown)]) == shown


def test_candle_shows_its_minute_and_a_stale_one_is_marked_and_dim() -> None:
    tick_ts = T0 + 61_500  # the latest tick: 00:01:01.5
    current = candle_text(candle(T0 + 60_000, 1.0, 1.2, 0.9, 1.1, trades=12), tick_ts)
    assert current.plain == "00:01 O 1.0000 H 1.2000 L 0.9000 C 1.1000 · 12"
    assert STALE_MARK not in current.plain and "dim" not in str(current.style)
    older = candle_text(candle(T0, 1.0, 1.2, 0.9, 1.1), tick_ts)
    assert older.plain.startswith(f"00:00 {STALE_MARK} O 1.0000")
    assert str(older.style) == "dim"
    assert not any("green" in str(span.style) for span in older.spans)  # no up/down colour
    ahead = candle_text(candle(T0 + 120_000, 1.0, 1.2, 0.9, 1.1), tick_ts)  # watch lags the aggregator
    assert STALE_MARK not in ahead.plain
    short = candle_text(candle(T0 + 60_000, 1.0, 1.2, 0.9, 1.1, trades=12), tick_ts, full=False)
    assert short.plain == "00:01 C 1.1000 · 12"


def test_stale_candle_in_the_table_is_dimmed_at_every_width() -> None:
    for width in (80, 120, 220):
        text = screen(width)
        assert "00:01 C 67,009.75" in row(text, "BTC") or "00:01 O 67,000.00" in row(text, "BTC")
        assert f"00:00 {STALE_MARK}" in row(text, "ETH")
        assert STALE_MARK not in row(text, "BTC")
    styled = next(line for line in screen(120, styles=True).splitlines() if "ETH" in line)
    assert re.search(r"\x1b\[2m00:00 \(stale\)", styled), styled


# --- two markets of one symbol ------------------------------------------------------

# Binance BTC/USDT and Coinbase BTC/USD, each with its own current candle; ETH on Coinbase.
BTC_BINANCE, BTC_COINBASE = ("BTC", "binance", "USDT"), ("BTC", "coinbase", "USD")
MARKET_LAST = {"BTC/USDT binance": "67,009.75", "BTC/USD coinbase": "67,109.75", "ETH": "3,409.75"}


def two_markets_state() -> WatchState:
    state = WatchState.create(0.0)
    for i in range(40):
        for sym, source, quote, base in (("BTC", "binance", "USDT", 67000.0),
                                         ("BTC", "coinbase", "USD", 67100.0),
                                         ("ETH", "coinbase", "USD", 3400.0)):  # fmt: skip
            state.apply(Tick(sym, base + i * 0.25, T0 + 90_000 + i, source, T0, quote), i * 0.1)
    state.candles = {
        BTC_BINANCE: candle(T0 + 60_000, 67000.0, 67012.5, 66990.25, 67009.75, trades=11),
        BTC_COINBASE: candle(T0 + 60_000, 67100.0, 67112.5, 67090.25, 67105.5, trades=22),
        # ETH's candle of another market of the same symbol: never shown in ETH's row.
        ("ETH", "binance", "USDT"): candle(T0 + 60_000, 1.0, 1.0, 1.0, 1.0, trades=99),
    }
    return state


def two_markets_screen(width: int) -> str:
    console = Console(record=True, width=width, color_system=None, file=io.StringIO())
    console.print(watch_view(two_markets_state(), 4.0, title="cryptoctl watch", width=width))
    return console.export_text()


@pytest.mark.parametrize("width", [80, 120, 160])
def test_two_markets_of_one_symbol_are_two_whole_rows_with_their_own_candle(width: int) -> None:
    text = two_markets_screen(width)
    for label, price in MARKET_LAST.items():
        line = row(text, re.escape(label))
        assert re.match(rf"│ {re.escape(label)}\s+│\s+{re.escape(price)} ", line), line
    table = [line for line in text.splitlines() if line[:1] in "┏┃┡│└"]
    assert all(len(line) <= width for line in table) and not any("…" in ln for ln in table)
    assert "1m candle" in header(text)
    assert "00:01 C 67,009.75 · 11" in row(text, "BTC/USDT binance")
    assert "00:01 C 67,105.50 · 22" in row(text, "BTC/USD coinbase")
    assert "—" in row(text, "ETH") and "99" not in row(text, "ETH")
    assert "120 ticks · 3 markets of 2 symbols" in text
    assert "sources: binance 40, coinbase 80" in " ".join(text.split())  # the footer wraps


def test_two_markets_at_120_columns_show_high_and_low_per_market() -> None:
    text = two_markets_screen(120)
    assert header(text)[:6] == ["market", "price", "chg", "24h", "high", "low"]
    assert "│ 67,109.75 │ 67,100.00 │" in row(text, "BTC/USD coinbase")
    assert "│ 67,009.75 │ 67,000.00 │" in row(text, "BTC/USDT binance")
