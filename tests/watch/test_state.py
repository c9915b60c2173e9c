"""Watch state and its display, driven with explicit times (no clock, no broker)."""

from __future__ import annotations

import io
from collections import Counter
from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from cryptoctl.cache.documents import CandleDoc
from cryptoctl.cache.poller import NONE_YET, OK, UNAVAILABLE
from cryptoctl.render.watch import STALE_S, candle_text, footer, price_text, summary, watch_view
from cryptoctl.sources.coins import parse_symbols
from cryptoctl.tick import Tick
from cryptoctl.watch.reader import decode
from cryptoctl.watch.state import WatchState

TS = 1_793_491_200_000
SYNTH = "synthetic", "USD"


def tick(
    symbol: str, price: float, *, source: str = "synthetic", quote: str = "USD", **extra: object
) -> Tick:
    return Tick(symbol, price, TS, source, TS, quote, qty=1.0, extra=dict(extra))


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
    btc = state.markets["BTC", *SYNTH]
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
    eth = state.markets["ETH", *SYNTH]
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
    btc = state.markets["BTC", *SYNTH]
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
        ("BTC", *SYNTH): CandleDoc("BTC", TS, 67000.0, 67100.0, 66900.0, 67050.0, 2.0, 2, 67050.0, 67050.0,
                         TS, TS + 5, "open", False)
    }
    state.cache_status = OK
    text = render(watch_view(state, 2.0, title="watch", width=200), width=200)
    btc = next(line for line in text.splitlines() if "BTC" in line)
    assert "67,100.00 ▲" in btc and "+0.15%" in btc and "+1.25%" in btc and "00:00 O 67,000.00" in btc
    assert "3 ticks · 2 markets" in text and "invalid 1" in text and "sources: synthetic 3" in text
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
    assert "1 ticks from 1 market" in summary(state, 3.0).plain
    assert "SOL" in summary(state, 3.0).plain


# --- markets: (symbol, source, quote) ----------------------------------------------

BINANCE, COINBASE = ("binance", "USDT"), ("coinbase", "USD")


def test_two_markets_of_one_symbol_are_two_rows_with_their_own_numbers() -> None:
    state = WatchState.create(0.0)
    state.apply(tick("BTC", 100.0, source="binance", quote="USDT"), 0.0)
    state.apply(tick("BTC", 200.0, source="coinbase"), 0.0)
    state.apply(tick("BTC", 110.0, source="binance", quote="USDT"), 1.0)
    state.apply(tick("ETH", 10.0, source="coinbase"), 1.0)
    binance, coinbase = state.markets["BTC", *BINANCE], state.markets["BTC", *COINBASE]
    assert (binance.first_price, binance.last_price, binance.ticks) == (100.0, 110.0, 2)
    assert (coinbase.first_price, coinbase.last_price, coinbase.ticks) == (200.0, 200.0, 1)
    assert round(binance.change_pct, 6) == 10.0 and coinbase.change_pct == 0.0
    assert [m.market for m in state.ordered()] == [
        ("BTC", *BINANCE), ("BTC", *COINBASE), ("ETH", *COINBASE)
    ]
    # A symbol in one market keeps its short name; two markets of one are told apart.
    assert state.labels() == {
        ("BTC", *BINANCE): "BTC/USDT binance", ("BTC", *COINBASE): "BTC/USD coinbase",
        ("ETH", *COINBASE): "ETH",
    }
    assert state.symbols() == ["BTC", "ETH"]
    text = summary(state, 2.0).plain
    assert "4 ticks from 3 markets of 2 symbols" in text
    assert "\n  BTC/USDT binance last 110.00 (+10.00%)  high 110.00  low 100.00  ticks 2" in text
    assert "\n  BTC/USD coinbase last 200.00 (+0.00%)" in text
    assert "\n  ETH              last 10.0000" in text  # names padded to the longest


def test_source_and_quote_filters() -> None:
    state = WatchState.create(0.0, ["btc"], source="Binance", quote="usdt")
    assert (state.source_filter, state.quote_filter) == ("binance", "USDT")
    assert state.apply(tick("BTC", 1.0, source="binance", quote="USDT"), 0.0)
    assert not state.apply(tick("BTC", 1.0, source="coinbase", quote="USDT"), 0.0)  # source
    assert not state.apply(tick("BTC", 1.0, source="binance", quote="USDC"), 0.0)  # quote
    assert not state.apply(tick("ETH", 1.0, source="binance", quote="USDT"), 0.0)  # symbol
    assert (state.ticks, state.filtered_out) == (1, 3)
    assert list(state.markets) == [("BTC", "binance", "USDT")]


def test_a_gap_record_is_neither_a_tick_nor_invalid() -> None:
    gap = (b'{"v":1,"kind":"gap","source":"binance","symbol":"BTC","quote":"USDT",'
           b'"first_id":5,"last_id":9,"after_ts":1793491200000,"before_ts":1793491201000,'
           b'"reason":"history not available"}')
    got = decode(0, 7, gap)
    assert got.gap and got.tick is None and got.invalid is None
    broken = decode(0, 8, gap.replace(b'"first_id":5', b'"first_id":"5"'))  # not one: invalid
    assert not broken.gap and broken.invalid
    assert decode(0, 9, b"{not json").invalid and not decode(0, 9, b"{not json").gap
    btc = tick("BTC", 1.0, source="binance", quote="USDT")._replace(extra=None)
    assert decode(0, 9, btc.to_json()).tick == btc


MARKETS = [("BTC", "binance", "USDT"), ("BTC", "coinbase", "USD"), ("ETH", "coinbase", "USD"),
           ("BTC", "kraken", "USD")]  # fmt: skip
streams = st.lists(
    st.tuples(st.sampled_from(MARKETS), st.floats(0.01, 1e6, allow_nan=False)), max_size=60
)


@given(streams)
def test_per_market_numbers_match_brute_force(stream: list[tuple[tuple[str, str, str], float]]) -> None:
    state = WatchState.create(0.0)
    for i, ((symbol, source, quote), price) in enumerate(stream):
        assert state.apply(tick(symbol, price, source=source, quote=quote), float(i))
    assert set(state.markets) == {m for m, _ in stream}
    for market, m in state.markets.items():
        prices = [p for mk, p in stream if mk == market]
        assert (m.first_price, m.last_price) == (prices[0], prices[-1])
        assert (m.high, m.low, m.ticks) == (max(prices), min(prices), len(prices))
        assert m.change_pct == (prices[-1] / prices[0] - 1.0) * 100.0
        assert list(m.recent) == prices[-len(m.recent):]
        moves = [b for a, b in pairwise(prices) if a != b]
        assert m.direction == (0 if len(prices) < 2 or prices[-1] == prices[-2]
                               else 1 if prices[-1] > prices[-2] else -1)  # fmt: skip
        assert (m.moved_at is None) is (not moves)
    assert state.ticks == len(stream)
    assert state.sources == Counter(source for (_, source, _), _ in stream)
    per_symbol = Counter(symbol for symbol, _, _ in state.markets)
    for market, label in state.labels().items():
        assert (label == market[0]) is (per_symbol[market[0]] == 1)


@given(streams, st.sampled_from([None, "BTC"]), st.sampled_from([None, "coinbase", "KRAKEN"]),
       st.sampled_from([None, "USD", "usdt"]))  # fmt: skip
def test_filters_keep_exactly_the_matching_markets(
    stream: list[tuple[tuple[str, str, str], float]], symbol: str | None, source: str | None,
    quote: str | None,
) -> None:
    state = WatchState.create(0.0, [symbol] if symbol else None, source=source, quote=quote)
    for (sym, src, quo), price in stream:
        state.apply(tick(sym, price, source=src, quote=quo), 0.0)

    def wanted(market: tuple[str, str, str]) -> bool:
        return ((symbol is None or market[0] == symbol)
                and (source is None or market[1] == source.lower())
                and (quote is None or market[2] == quote.upper()))  # fmt: skip

    assert set(state.markets) == {m for m, _ in stream if wanted(m)}
    assert state.ticks == sum(1 for m, _ in stream if wanted(m))
    assert state.filtered_out == len(stream) - state.ticks
