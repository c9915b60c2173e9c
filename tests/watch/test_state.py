"""Watch state and its display, driven with explicit times (no clock, no broker)."""

from __future__ import annotations

import io

from rich.console import Console

from cryptoctl.cache.documents import CandleDoc
from cryptoctl.cache.poller import NONE_YET, OK, UNAVAILABLE
from cryptoctl.render.watch import STALE_S, candle_text, footer, price_text, summary, watch_view
from cryptoctl.sources.coins import parse_symbols
from cryptoctl.tick import Tick
from cryptoctl.watch.state import WatchState

TS = 1_793_491_200_000


def tick(symbol: str, price: float, *, source: str = "synthetic", **extra: object) -> Tick:
    return Tick(symbol, price, TS, source, TS, qty=1.0, extra=dict(extra))


def render(renderable: object, width: int = 160) -> str:
    console = Console(record=True, width=width, color_system=None, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def test_symbol_state_tracks_direction_change_high_low() -> None:
    state = WatchState.create(100.0)
    assert state.apply(tick("BTC", 100.0, change_24h_pct=2.5), 100.0)
    state.apply(tick("BTC", 110.0), 101.0)
    state.apply(tick("BTC", 90.0), 102.0)
    state.apply(tick("BTC", 90.0), 103.0)
    btc = state.symbols["BTC"]
    assert (btc.first_price, btc.last_price, btc.high, btc.low) == (100.0, 90.0, 110.0, 90.0)
    assert btc.ticks == 4 and state.ticks == 4
    assert btc.direction == 0 and btc.moved_at == 102.0
    assert round(btc.change_pct, 6) == -10.0
    assert btc.change_24h_pct == 2.5  # kept from the last tick that carried it
    assert list(btc.recent) == [100.0, 110.0, 90.0, 90.0]
    assert btc.age(110.0) == 7.0


def test_rate_counts_recent_window() -> None:
    state = WatchState.create(0.0)
    for i in range(20):
        state.apply(tick("ETH", 1.0 + i), i * 0.5)  # 2 ticks/s for 10 s
    eth = state.symbols["ETH"]
    assert abs(eth.rate(9.5) - 2.0) < 0.11
    assert eth.rate(100.0) == 0.0


def test_filter_invalid_and_sources() -> None:
    state = WatchState.create(0.0, parse_symbols(["btc", "eth,SOL"]))
    assert state.symbols_filter == frozenset({"BTC", "ETH", "SOL"})
    assert not state.apply(tick("DOGE", 0.1), 1.0)
    state.apply(tick("BTC", 1.0, source="coingecko"), 1.0)
    state.reject("not valid JSON")
    assert (state.ticks, state.filtered_out, state.invalid) == (1, 1, 1)
    assert state.sources == {"coingecko": 1}


def test_price_flashes_then_settles() -> None:
    state = WatchState.create(0.0)
    state.apply(tick("BTC", 100.0), 0.0)
    state.apply(tick("BTC", 101.0), 10.0)
    btc = state.symbols["BTC"]
    assert "green" in str(price_text(btc, 10.2).style)
    assert str(price_text(btc, 12.0).style) == "bold"
    state.apply(tick("BTC", 99.0), 20.0)
    assert "red" in str(price_text(btc, 20.1).style)
    assert "▼" in price_text(btc, 20.1).plain


def test_watch_view_rows_footer_and_stale_rows() -> None:
    state = WatchState.create(0.0)
    state.apply(tick("BTC", 67000.0, change_24h_pct=1.25), 0.0)
    state.apply(tick("BTC", 67100.0), 1.0)
    state.apply(tick("ETH", 3400.0), 1.0)
    state.reject("bad")
    state.candles = {
        "BTC": CandleDoc("BTC", TS, 67000.0, 67100.0, 66900.0, 67050.0, 2.0, 2, 67050.0, 67050.0,
                         TS, TS + 5, "open", False)
    }
    state.cache_status = OK
    text = render(watch_view(state, 2.0, title="watch", width=200), width=200)
    btc = next(line for line in text.splitlines() if "BTC" in line)
    assert "67,100.00 ▲" in btc and "+0.15%" in btc and "+1.25%" in btc and "00:00 O 67,000.00" in btc
    assert "3 ticks · 2 symbols" in text and "invalid 1" in text and "sources: synthetic 3" in text
    assert "candles: redis" in text
    console = Console(record=True, width=160, color_system="truecolor", file=io.StringIO())
    console.print(watch_view(state, 1.0 + STALE_S + 1))
    stale = next(line for line in console.export_text(styles=True).splitlines() if "ETH" in line)
    assert "\x1b[2m" in stale  # dimmed


def test_candle_text_without_a_candle() -> None:
    assert candle_text(None, TS).plain == "—"


def test_the_footer_words_the_cache_status_as_before() -> None:
    state = WatchState.create(0.0)
    assert "candles: not checked" in footer(state, 1.0).plain
    for status, words in ((OK, "redis"), (NONE_YET, "none yet"), (UNAVAILABLE, "redis unavailable")):
        state.cache_status = status
        assert footer(state, 1.0).plain.endswith(f"candles: {words}")


def test_footer_and_summary_on_empty_state() -> None:
    state = WatchState.create(0.0)
    assert "0 ticks" in footer(state, 5.0).plain
    assert render(watch_view(state, 1.0)).startswith("waiting for ticks")
    state.apply(tick("SOL", 150.0), 1.0)
    assert "1 ticks from 1 symbols" in summary(state, 3.0).plain
    assert "SOL" in summary(state, 3.0).plain
