"""Each exchange's REST history against its fake exchange (tests/fakes: a loopback server
that speaks the documented format over a known trade set): every page ascending,
continuing the previous one, nothing twice, nothing missing, stopping at ``until_id``;
candles; market checks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pytest_httpserver import HTTPServer

from cryptoctl.errors import UnknownMarket
from cryptoctl.exchanges import binance, coinbase, kraken
from cryptoctl.exchanges.rest import ExchangeBudget, ExchangeCandle, RateLimit, RestHistory, RetryPolicy
from cryptoctl.exchanges.trade import Market, Trade
from tests.fakes import MINUTE_MS, FakeExchange, fake_exchange, generate_trades

BTC_USDT = Market("binance", "BTC", "USDT")
BTC_USD_CB = Market("coinbase", "BTC", "USD")
BTC_USD_KR = Market("kraken", "BTC", "USD")
NO_LIMIT = RateLimit()
FAST_RETRY = RetryPolicy(max_attempts=3, backoff_initial_s=0.01, backoff_max_s=0.02, timeout_s=5)

HISTORIES: dict[str, type[RestHistory]] = {
    "binance": binance.BinanceHistory,
    "coinbase": coinbase.CoinbaseHistory,
    "kraken": kraken.KrakenHistory,
}
MARKETS = {"binance": BTC_USDT, "coinbase": BTC_USD_CB, "kraken": BTC_USD_KR}


@contextlib.contextmanager
def serve(
    exchange: str,
    trades: Sequence[Trade],
    *,
    now_s: float = 2e9,
    micros: Mapping[int, int] | None = None,
) -> Iterator[tuple[FakeExchange, Any]]:
    """(the fake exchange with ``trades`` as its whole history, a history client of it)."""
    market = MARKETS[exchange]
    options: dict[str, Any] = {"micros": {market: micros}} if micros is not None else {}
    with fake_exchange(exchange, {market: trades}, live=0, pace_s=None, **options) as fx:
        history = HISTORIES[exchange](
            fx.rest_url, budget=ExchangeBudget(NO_LIMIT), retry=FAST_RETRY, clock=lambda: now_s
        )
        try:
            yield fx, history
        finally:
            history.close()


def params_of(fx: FakeExchange, route: str) -> list[dict[str, str]]:
    """The query parameters of each request to ``route``, in order."""
    return [params for r, params, _ in fx.request_log if r == route]


def pages_ok(pages: list[list[Trade]]) -> list[Trade]:
    """The trades of the pages, checking each page is non-empty and ascending and that
    every page continues the previous one."""
    flat = [t for page in pages for t in page]
    assert all(pages), "an empty page"
    assert [t.trade_id for t in flat] == sorted({t.trade_id for t in flat}), "not ascending or a duplicate"
    return flat


PROPERTY = settings(max_examples=12, deadline=None)
EXCHANGES = pytest.mark.parametrize("exchange", ["binance", "coinbase", "kraken"])


@EXCHANGES
@PROPERTY
@given(
    n=st.integers(0, 2600),
    seed=st.integers(0, 2**32),
    after=st.integers(0, 2600),
    until=st.none() | st.integers(0, 2700),
)
def test_trades_after_are_every_later_trade_once_ascending(
    exchange: str, n: int, seed: int, after: int, until: int | None
) -> None:
    everything = generate_trades(seed, n, first_id=5_000)
    after = min(after, max(n - 1, 0))
    nothing_yet = Trade(4_999, 1_767_225_600_000, 1.0, 1.0, "buy")
    after_trade = everything[after] if everything else nothing_yet
    until_id = None if until is None else 5_000 + until
    with serve(exchange, everything) as (_, history):
        got = pages_ok(list(history.trades_after(MARKETS[exchange], after_trade, until_id=until_id)))
    assert got == [
        t for t in everything
        if t.trade_id > after_trade.trade_id and (until_id is None or t.trade_id <= until_id)
    ]  # fmt: skip


@EXCHANGES
@PROPERTY
@given(
    n=st.integers(0, 2600),
    seed=st.integers(0, 2**32),
    at=st.integers(-5, 2605),
)
def test_trades_since_start_at_the_first_trade_at_or_after_the_time(
    exchange: str, n: int, seed: int, at: int
) -> None:
    everything = generate_trades(seed, n)
    if everything:
        ts = everything[min(max(at, 0), n - 1)].ts + (1 if at > n else -1 if at < 0 else 0)
    else:
        ts = 1_767_225_600_000
    with serve(exchange, everything) as (_, history):
        got = pages_ok(list(history.trades_since(MARKETS[exchange], ts)))
    assert got == [t for t in everything if t.ts >= ts]


def test_binance_pages_by_trade_id_with_the_documented_weights() -> None:
    trades = generate_trades(1, 2500, first_id=100)
    with serve("binance", trades) as (fx, history):
        pages = list(history.trades_after(BTC_USDT, trades[0]))
        assert [len(p) for p in pages] == [1000, 1000, 499]
        assert [r["fromId"] for r in params_of(fx, "/api/v3/historicalTrades")] == ["101", "1101", "2101"]
        assert history.rest.budget._used >= 3 * 25  # the header (or our count) is tracked


def test_coinbase_asks_pages_directly_instead_of_walking_back() -> None:
    trades = generate_trades(2, 5000)
    with serve("coinbase", trades) as (fx, history):
        pages = list(history.trades_after(BTC_USD_CB, trades[1999]))  # id 2000: 3000 newer trades
        assert [(p[0].trade_id, p[-1].trade_id) for p in pages] == [(2001, 3000), (3001, 4000), (4001, 5000)]
        # the newest page first (where to stop), then one request per page, the last page reused
        assert [r.get("after") for r in params_of(fx, "/products/{id}/trades")] == [None, "3001", "4001"]


def test_kraken_since_is_the_after_trades_time_in_ns_and_rows_up_to_it_are_dropped() -> None:
    trades = generate_trades(3, 10)
    with serve("kraken", trades) as (fx, history):
        got = [t.trade_id for page in history.trades_after(BTC_USD_KR, trades[4]) for t in page]
        assert got == [6, 7, 8, 9, 10]
        assert int(params_of(fx, "/0/public/Trades")[0]["since"]) == trades[4].ts * 1_000_000 - 1


def test_kraken_keeps_trades_of_one_time_split_by_a_page_end() -> None:
    # three trades per microsecond: trades 1000 and 1001 (ids) share a time across the page end
    start_us = 1_767_225_600_000_000
    times_us = [start_us + k // 3 for k in range(1500)]
    trades = [Trade(k + 1, us // 1000, 1.5, 2.0, "buy") for k, us in enumerate(times_us)]
    micros = {k + 1: us % 1000 for k, us in enumerate(times_us)}
    with serve("kraken", trades, micros=micros) as (fx, history):
        got = pages_ok(list(history.trades_since(BTC_USD_KR, start_us // 1000)))
        assert [t.trade_id for t in got] == list(range(1, 1501))
        assert len(params_of(fx, "/0/public/Trades")) == 2


# --- candles -------------------------------------------------------------------------

T0 = 1_767_225_600_000  # a minute start, ms
OPEN, HIGH, LOW, CLOSE = 10.0, 12.5, 9.5, 11.0


def minute_trades(minutes: int, empty: Any) -> list[Trade]:
    """Four trades in each minute but the ``empty(k)`` ones: open, high, low, close, each
    of 0.25 (so every such minute is the same candle: volume 1, 4 trades)."""
    trades: list[Trade] = []
    for k in range(minutes):
        if empty(k):
            continue
        for j, price in enumerate((OPEN, HIGH, LOW, CLOSE)):
            trades.append(Trade(len(trades) + 1, T0 + k * MINUTE_MS + j * 1000, price, 0.25, "buy"))
    return trades


def test_binance_klines_in_pages_and_the_open_minute_not_closed() -> None:
    now_s = (T0 + 2400 * MINUTE_MS + 30_000) / 1000  # minute 2400 is forming
    trades = minute_trades(2401, lambda k: k % 7 == 1)
    with serve("binance", trades, now_s=now_s) as (_, history):
        pages = list(history.candles(BTC_USDT, T0, T0 + 2401 * MINUTE_MS))
    assert [len(p) for p in pages] == [1000, 1000, 401]
    flat = [c for p in pages for c in p]
    assert [c.bucket_ms for c in flat] == [T0 + k * MINUTE_MS for k in range(2401)]
    # an empty minute: the previous close throughout, no volume, no VWAP
    assert flat[8] == ExchangeCandle(T0 + 8 * MINUTE_MS, CLOSE, CLOSE, CLOSE, CLOSE, 0.0, 0, True)
    # VWAP = quote volume / volume, known to one unit of the quote volume's 8th decimal
    vwap = (OPEN + HIGH + LOW + CLOSE) / 4
    assert flat[9] == ExchangeCandle(T0 + 9 * MINUTE_MS, OPEN, HIGH, LOW, CLOSE, 1.0, 4, True, vwap, 1e-8)
    assert [c.closed for c in flat[-2:]] == [True, False]


def test_coinbase_candles_ask_300_minutes_at_a_time_and_skip_empty_minutes() -> None:
    minutes = [k for k in range(700) if k % 5]  # every fifth minute had no trade: no row
    trades = minute_trades(700, lambda k: k % 5 == 0)
    with serve("coinbase", trades, now_s=(T0 + 700 * MINUTE_MS) / 1000) as (fx, history):
        pages = list(history.candles(BTC_USD_CB, T0, T0 + 700 * MINUTE_MS))
        assert len(params_of(fx, "/products/{id}/candles")) == 3
    flat = [c for p in pages for c in p]
    assert [c.bucket_ms for c in flat] == [T0 + k * MINUTE_MS for k in minutes]
    # the row is [time, low, high, open, close, volume]: read in that order
    assert flat[0] == ExchangeCandle(T0 + MINUTE_MS, OPEN, HIGH, LOW, CLOSE, 1.0, None, True)


def test_kraken_ohlc_has_its_last_row_uncommitted() -> None:
    trades = minute_trades(11, lambda k: k == 3)
    with serve("kraken", trades, now_s=(T0 + 10 * MINUTE_MS + 5_000) / 1000) as (_, history):
        (page,) = history.candles(BTC_USD_KR, T0 + 2 * MINUTE_MS, T0 + 11 * MINUTE_MS)
    assert [c.bucket_ms for c in page] == [T0 + k * MINUTE_MS for k in range(2, 11)]
    assert page[1] == ExchangeCandle(T0 + 3 * MINUTE_MS, CLOSE, CLOSE, CLOSE, CLOSE, 0.0, 0, True)  # no VWAP
    # the VWAP to the decimals Kraken sent (five)
    assert (page[2].vwap, page[2].vwap_step) == ((OPEN + HIGH + LOW + CLOSE) / 4, 1e-5)
    assert [c.closed for c in page[-2:]] == [True, False]


# --- markets -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exchange", "market", "message"),
    [
        ("binance", Market("binance", "BTC", "USDX"), "binance has no market BTC/USDX (tried BTCUSDX)"),
        ("coinbase", Market("coinbase", "BTC", "USDX"), "coinbase has no market BTC/USDX (tried BTC-USDX)"),
        ("kraken", Market("kraken", "BTC", "USDX"), "kraken has no market BTC/USDX (tried XBTUSDX)"),
    ],
)
def test_an_unknown_market_is_a_usage_error_naming_the_spelling_tried(
    exchange: str, market: Market, message: str
) -> None:
    with serve(exchange, generate_trades(4, 10)) as (_, history):
        with pytest.raises(UnknownMarket) as caught:
            history.check_market(market)
        assert caught.value.message == message
        assert caught.value.exit_code == 2
        history.check_market(MARKETS[exchange])  # the known one passes


def test_kraken_rest_times_are_floored_on_the_digits_sent_not_on_a_double(
    httpserver: HTTPServer,
) -> None:
    # 0.1 µs before a second: the nearest double is the next second, so a float parse
    # would move the trade into the next second (and here, the next minute).
    body = (
        '{"error":[],"result":{"XXBTZUSD":[["100.5","0.25",1767225659.9999999,"b","l","",41],'
        '["100.6","0.5",1767225660.0000001,"s","l","",42]],"last":"1767225660000000100"}}'
    )
    httpserver.expect_request("/0/public/Trades").respond_with_data(
        body, content_type="application/json"
    )
    history = kraken.KrakenHistory(
        httpserver.url_for("/"), budget=ExchangeBudget(NO_LIMIT), retry=FAST_RETRY
    )
    after = Trade(40, 1_767_225_659_000, 100.0, 1.0, "buy")
    trades = [t for page in history.trades_after(BTC_USD_KR, after, until_id=42) for t in page]
    assert [(t.trade_id, t.ts, t.side) for t in trades] == [
        (41, 1_767_225_659_999, "buy"),
        (42, 1_767_225_660_000, "sell"),
    ]
    assert float("1767225659.9999999") * 1000 // 1 == 1_767_225_660_000  # what a double does
