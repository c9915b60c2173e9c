"""Each exchange's REST history against a loopback server that speaks its documented
format over a generated tape of trades: every page ascending, continuing the previous
one, nothing twice, nothing missing, stopping at ``until_id``; candles; market checks.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from cryptoctl.errors import UnknownMarket
from cryptoctl.exchanges import binance, coinbase, kraken
from cryptoctl.exchanges.rest import ExchangeBudget, ExchangeCandle, RateLimit, RetryPolicy
from cryptoctl.exchanges.trade import Market, Trade
from tests.exchanges.test_wire_formats import iso

BTC_USDT = Market("binance", "BTC", "USDT")
BTC_USD_CB = Market("coinbase", "BTC", "USD")
BTC_USD_KR = Market("kraken", "BTC", "USD")
NO_LIMIT = RateLimit()
FAST_RETRY = RetryPolicy(max_attempts=3, backoff_initial_s=0.01, backoff_max_s=0.02, timeout_s=5)


@dataclass(frozen=True)
class Tape:
    """The exchange's trades: consecutive ids, µs times never decreasing (often equal)."""

    trades: list[tuple[int, int, str, str, str]]  # id, us, price, qty, taker side

    def expected(self) -> list[Trade]:
        return [Trade(i, us // 1000, float(p), float(q), s) for i, us, p, q, s in self.trades]  # type: ignore[arg-type]


def make_tape(n: int, first_id: int, seed: int) -> Tape:
    rnd = random.Random(seed)
    us = 1_700_000_000_000_000 + rnd.randrange(10**9)
    rows = []
    for k in range(n):
        us += rnd.choice([0, 0, 0, 1, 999, 1000, 123_457])  # many trades share a time
        price = f"{rnd.randrange(1, 10**8) / 100:.2f}"
        rows.append(
            (first_id + k, us, price, f"0.{rnd.randrange(1, 10**8):08d}", rnd.choice(["buy", "sell"]))
        )
    return Tape(rows)


def arg(request: Request, name: str, default: int | None = None) -> int | None:
    value = request.args.get(name)
    return int(value) if value is not None else default


def reply(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status=status, headers=headers, content_type="application/json")


@dataclass
class FakeExchange:
    """What the loopback server answers: the tape, the candles, and a request log."""

    tape: Tape = field(default_factory=lambda: Tape([]))
    candles: list[list[Any]] = field(default_factory=list)
    requests: list[dict[str, str]] = field(default_factory=list)

    def log(self, request: Request) -> None:
        self.requests.append({"path": request.path, **request.args})


# --- Binance -------------------------------------------------------------------------


def binance_handler(fake: FakeExchange, request: Request) -> Response:
    fake.log(request)
    weight = {"headers": {"X-MBX-USED-WEIGHT-1M": str(len(fake.requests) * 25)}}
    if request.args.get("symbol") != "BTCUSDT":
        return reply({"code": -1121, "msg": "Invalid symbol."}, 400)
    if request.path == "/api/v3/exchangeInfo":
        return reply({"symbols": [{"symbol": "BTCUSDT", "status": "TRADING"}]}, **weight)
    limit = arg(request, "limit", 500) or 500
    if request.path == "/api/v3/historicalTrades":
        start = arg(request, "fromId", 0) or 0
        rows = [
            {"id": i, "price": p, "qty": q, "quoteQty": "0", "time": us // 1000,
             "isBuyerMaker": s == "sell", "isBestMatch": True}
            for i, us, p, q, s in fake.tape.trades if i >= start
        ][: min(limit, 1000)]  # fmt: skip
        return reply(rows, **weight)
    if request.path == "/api/v3/aggTrades":  # each trade its own aggregate: f = l = id
        since = arg(request, "startTime", 0) or 0
        rows = [{"a": i, "p": p, "q": q, "f": i, "l": i, "T": us // 1000, "m": s == "sell", "M": True}
                for i, us, p, q, s in fake.tape.trades if us // 1000 >= since][:limit]  # fmt: skip
        return reply(rows, **weight)
    if request.path == "/api/v3/klines":
        lo, hi = arg(request, "startTime", 0) or 0, arg(request, "endTime", 2**62) or 2**62
        return reply([row for row in fake.candles if lo <= row[0] <= hi][: min(limit, 1000)], **weight)
    return reply({"code": -1, "msg": "unknown path"}, 404)


# --- Coinbase ------------------------------------------------------------------------


def coinbase_handler(fake: FakeExchange, request: Request) -> Response:
    fake.log(request)
    if not request.path.startswith("/products/BTC-USD"):
        return reply({"message": "NotFound"}, 404)
    if request.path == "/products/BTC-USD":
        return reply({"id": "BTC-USD", "base_currency": "BTC", "quote_currency": "USD"})
    if request.path == "/products/BTC-USD/trades":
        below = arg(request, "after")
        limit = min(arg(request, "limit", 1000) or 1000, 1000)
        newest_first = [t for t in reversed(fake.tape.trades) if below is None or t[0] < below][:limit]
        maker = {"buy": "sell", "sell": "buy"}  # Coinbase's side is the maker's
        rows = [{"time": iso(us), "trade_id": i, "price": p, "size": q, "side": maker[s]}
                for i, us, p, q, s in newest_first]  # fmt: skip
        headers = (
            {"CB-BEFORE": str(rows[0]["trade_id"]), "CB-AFTER": str(rows[-1]["trade_id"])} if rows else {}
        )
        return reply(rows, headers=headers)
    if request.path == "/products/BTC-USD/candles":
        from datetime import datetime

        lo, hi = (
            datetime.fromisoformat(request.args[k].replace("Z", "+00:00")).timestamp()
            for k in ("start", "end")
        )
        rows = [r for r in fake.candles if lo <= r[0] <= hi]
        assert len(rows) <= 300, "more than 300 candles asked for"
        return reply(sorted(rows, reverse=True))
    return reply({"message": "NotFound"}, 404)


# --- Kraken --------------------------------------------------------------------------


def kraken_handler(fake: FakeExchange, request: Request) -> Response:
    fake.log(request)
    if request.args.get("pair") != "XBTUSD":
        return reply({"error": ["EQuery:Unknown asset pair"]})
    if request.path == "/0/public/AssetPairs":
        return reply({"error": [], "result": {"XXBTZUSD": {"altname": "XBTUSD", "wsname": "XBT/USD"}}})
    if request.path == "/0/public/Trades":
        since_ns = arg(request, "since", 0) or 0
        # exclusive since, 1000 rows: the page boundary may split trades of one time
        newer = [t for t in fake.tape.trades if t[1] * 1000 > since_ns][:1000]
        rows = [[p, q, us / 1e6, "b" if s == "buy" else "s", "l", "", i] for i, us, p, q, s in newer]
        last = str(newer[-1][1] * 1000) if newer else str(since_ns)
        return reply({"error": [], "result": {"XXBTZUSD": rows, "last": last}})
    if request.path == "/0/public/OHLC":
        since = arg(request, "since", 0) or 0
        rows = [r for r in fake.candles[-720:] if r[0] > since]
        return reply({"error": [], "result": {"XXBTZUSD": rows, "last": rows[-2][0] if len(rows) > 1 else 0}})
    return reply({"error": ["EGeneral:Unknown method"]})


HANDLERS = {"binance": binance_handler, "coinbase": coinbase_handler, "kraken": kraken_handler}
HISTORIES = {
    "binance": binance.BinanceHistory,
    "coinbase": coinbase.CoinbaseHistory,
    "kraken": kraken.KrakenHistory,
}
MARKETS = {"binance": BTC_USDT, "coinbase": BTC_USD_CB, "kraken": BTC_USD_KR}


@pytest.fixture
def serve(httpserver: HTTPServer) -> Iterator[Any]:
    """serve(exchange) -> (fake, history) against the loopback server."""

    def start(exchange: str, now_s: float = 2e9) -> tuple[FakeExchange, Any]:
        httpserver.clear()
        fake = FakeExchange()
        httpserver.expect_request("").respond_with_handler(lambda r: HANDLERS[exchange](fake, r))
        history = HISTORIES[exchange](
            httpserver.url_for("/"), budget=ExchangeBudget(NO_LIMIT), retry=FAST_RETRY, clock=lambda: now_s
        )
        return fake, history

    yield start
    httpserver.clear()


def pages_ok(pages: list[list[Trade]]) -> list[Trade]:
    """The trades of the pages, checking each page is non-empty and ascending and that
    every page continues the previous one."""
    flat = [t for page in pages for t in page]
    assert all(pages), "an empty page"
    assert [t.trade_id for t in flat] == sorted({t.trade_id for t in flat}), "not ascending or a duplicate"
    return flat


PROPERTY = settings(max_examples=12, suppress_health_check=[HealthCheck.function_scoped_fixture])


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
    serve: Any, exchange: str, n: int, seed: int, after: int, until: int | None
) -> None:
    fake, history = serve(exchange)
    fake.tape = make_tape(n, 5_000, seed)
    everything = fake.tape.expected()
    after = min(after, max(n - 1, 0))
    nothing_yet = Trade(4_999, 1_700_000_000_000, 1.0, 1.0, "buy")
    after_trade = everything[after] if everything else nothing_yet
    until_id = None if until is None else 5_000 + until
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
    serve: Any, exchange: str, n: int, seed: int, at: int
) -> None:
    fake, history = serve(exchange)
    fake.tape = make_tape(n, 1, seed)
    everything = fake.tape.expected()
    if everything:
        ts = everything[min(max(at, 0), n - 1)].ts + (1 if at > n else -1 if at < 0 else 0)
    else:
        ts = 1_700_000_000_000
    got = pages_ok(list(history.trades_since(MARKETS[exchange], ts)))
    assert got == [t for t in everything if t.ts >= ts]


def test_binance_pages_by_trade_id_with_the_documented_weights(serve: Any) -> None:
    fake, history = serve("binance")
    fake.tape = make_tape(2500, 100, seed=1)
    last = fake.tape.expected()[0]
    pages = list(history.trades_after(BTC_USDT, last))
    assert [len(p) for p in pages] == [1000, 1000, 499]
    assert [r["fromId"] for r in fake.requests] == ["101", "1101", "2101"]
    assert history.rest.budget._used >= 3 * 25  # the header (or our count) is tracked


def test_coinbase_asks_pages_directly_instead_of_walking_back(serve: Any) -> None:
    fake, history = serve("coinbase")
    fake.tape = make_tape(5000, 1, seed=2)
    after = fake.tape.expected()[1999]  # id 2000: 3000 newer trades
    pages = list(history.trades_after(BTC_USD_CB, after))
    assert [(p[0].trade_id, p[-1].trade_id) for p in pages] == [(2001, 3000), (3001, 4000), (4001, 5000)]
    # the newest page first (where to stop), then one request per page, the last page reused
    assert [r.get("after") for r in fake.requests] == [None, "3001", "4001"]


def test_kraken_since_is_the_after_trades_time_in_ns_and_rows_up_to_it_are_dropped(serve: Any) -> None:
    fake, history = serve("kraken")
    fake.tape = make_tape(10, 1, seed=3)
    after = fake.tape.expected()[4]
    assert [t.trade_id for page in history.trades_after(BTC_USD_KR, after) for t in page] == [6, 7, 8, 9, 10]
    assert int(fake.requests[0]["since"]) == after.ts * 1_000_000 - 1


def test_kraken_keeps_trades_of_one_time_split_by_a_page_end(serve: Any) -> None:
    fake, history = serve("kraken")
    # three trades per microsecond: trades 1000 and 1001 (ids) share a time across the page end
    fake.tape = Tape([(k + 1, 1_700_000_000_000_000 + k // 3, "1.5", "2", "buy") for k in range(1500)])
    got = pages_ok(list(history.trades_since(BTC_USD_KR, 1_700_000_000_000)))
    assert [t.trade_id for t in got] == list(range(1, 1501))
    assert len(fake.requests) == 2


# --- candles -------------------------------------------------------------------------

T0 = 1_700_000_040_000 - 1_700_000_040_000 % 60_000  # a minute start, ms


def test_binance_klines_in_pages_and_the_open_minute_not_closed(serve: Any) -> None:
    now_s = (T0 + 2400 * 60_000 + 30_000) / 1000  # minute 2400 is forming
    fake, history = serve("binance", now_s=now_s)
    fake.candles = [
        [T0 + k * 60_000, "10.0", "12.5", "9.5", "11.0", "0" if k % 7 == 0 else "3.25",
         T0 + k * 60_000 + 59_999, "0" if k % 7 == 0 else "35.75000000", 0 if k % 7 == 0 else k,
         "0", "0", "0"]
        for k in range(2401)
    ]  # fmt: skip
    pages = list(history.candles(BTC_USDT, T0, T0 + 2401 * 60_000))
    assert [len(p) for p in pages] == [1000, 1000, 401]
    flat = [c for p in pages for c in p]
    assert [c.bucket_ms for c in flat] == [T0 + k * 60_000 for k in range(2401)]
    assert flat[7] == ExchangeCandle(T0 + 7 * 60_000, 10.0, 12.5, 9.5, 11.0, 0.0, 0, True)
    # VWAP = quote volume / volume, known to one unit of the quote volume's 8th decimal
    assert flat[8] == ExchangeCandle(T0 + 8 * 60_000, 10.0, 12.5, 9.5, 11.0, 3.25, 8, True, 11.0, 1e-8 / 3.25)
    assert [c.closed for c in flat[-2:]] == [True, False]


def test_coinbase_candles_ask_300_minutes_at_a_time_and_skip_empty_minutes(serve: Any) -> None:
    fake, history = serve("coinbase", now_s=(T0 + 700 * 60_000) / 1000)
    minutes = [k for k in range(700) if k % 5]  # every fifth minute had no trade: no row
    fake.candles = [[(T0 + k * 60_000) // 1000, 9.0, 12.0, 10.0, 11.0, 1.5] for k in minutes]
    pages = list(history.candles(BTC_USD_CB, T0, T0 + 700 * 60_000))
    assert len(fake.requests) == 3
    flat = [c for p in pages for c in p]
    assert [c.bucket_ms for c in flat] == [T0 + k * 60_000 for k in minutes]
    assert flat[0] == ExchangeCandle(T0 + 60_000, 10.0, 12.0, 9.0, 11.0, 1.5, None, True)  # low before high


def test_kraken_ohlc_has_its_last_row_uncommitted(serve: Any) -> None:
    fake, history = serve("kraken", now_s=(T0 + 10 * 60_000 + 5_000) / 1000)
    fake.candles = [
        [(T0 + k * 60_000) // 1000, "10", "12", "9", "11", "10.5", "0" if k == 3 else "2", 0 if k == 3 else 4]
        for k in range(11)
    ]
    (page,) = history.candles(BTC_USD_KR, T0 + 2 * 60_000, T0 + 11 * 60_000)
    assert [c.bucket_ms for c in page] == [T0 + k * 60_000 for k in range(2, 11)]
    assert page[1] == ExchangeCandle(T0 + 3 * 60_000, 10.0, 12.0, 9.0, 11.0, 0.0, 0, True)  # no VWAP
    assert (page[2].vwap, page[2].vwap_step) == (10.5, 0.1)  # to the decimals Kraken sent
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
    serve: Any, exchange: str, market: Market, message: str
) -> None:
    _, history = serve(exchange)
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
