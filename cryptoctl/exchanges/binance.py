"""Binance spot: the ``<symbol>@trade`` streams and the public REST history.

Spellings: our ``BTC/USDT`` is ``BTCUSDT`` in REST and in trade events, ``btcusdt@trade``
as a stream name. Taker side: ``sell`` when ``m`` (buyer is maker) is true.

The wire knows the markets it was asked for: :meth:`BinanceWire.stream_url` and
:meth:`BinanceWire.subscribe` register them (or build one with
:meth:`BinanceWire.for_markets`), and ``parse`` maps ``BTCUSDT`` back to that market; a
symbol never registered is Garbage. ``BTCUSDT`` alone cannot be split (``BTCUSDT`` could
be BTC/USDT or BTCU/SDT), hence the lookup.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import orjson

from cryptoctl.exchanges import fields
from cryptoctl.exchanges.rest import ExchangeCandle, RateLimit, RestHistory, decimal_step, page_after
from cryptoctl.exchanges.trade import Market, Trade
from cryptoctl.exchanges.wire import Control, Event, Garbage, MarketWire, TradeEvent

NAME = "binance"
DEFAULT_WS_URL = "wss://stream.binance.com:9443"
DEFAULT_REST_URL = "https://api.binance.com"

LIMIT = RateLimit(weight_limit=6000, weight_header="x-mbx-used-weight-1m", weight_window_s=60.0)
# Request weights (Binance's docs): the budget adds them up before the header says so.
WEIGHT_HISTORICAL_TRADES = 25
WEIGHT_AGG_TRADES = 4
WEIGHT_KLINES = 2
WEIGHT_EXCHANGE_INFO = 20
TRADES_PAGE = 1000
KLINES_PAGE = 1000
MINUTE_MS = 60_000


def exchange_symbol(market: Market) -> str:
    return f"{market.symbol}{market.quote}".upper()


def stream_name(market: Market) -> str:
    return f"{exchange_symbol(market).lower()}@trade"


class BinanceWire(MarketWire):
    name = NAME
    default_ws_url = DEFAULT_WS_URL
    default_rest_url = DEFAULT_REST_URL
    default_quote = "USDT"
    silence_s = 30.0  # server pings every 20 s
    max_connection_s: float | None = 23.5 * 3600  # Binance closes at 24 h

    def exchange_symbol(self, market: Market) -> str:
        return exchange_symbol(market)

    def stream_url(self, base_url: str, markets: Sequence[Market]) -> str:
        self.register(markets)
        return f"{base_url.rstrip('/')}/stream?streams={'/'.join(stream_name(m) for m in markets)}"

    def ping(self) -> str | None:
        return None  # protocol pings, answered by the websockets library

    def parse(self, frame: str | bytes) -> list[Event]:
        try:
            obj = orjson.loads(frame)
        except orjson.JSONDecodeError:
            return [Garbage("not JSON")]
        if type(obj) is not dict:
            return [Garbage("not a JSON object")]
        if "stream" in obj and "data" in obj:  # the combined stream's wrapper
            obj = obj["data"]
            if type(obj) is not dict:
                return [Garbage("combined-stream data is not an object")]
        if obj.get("e") == "trade" and "error" not in obj and "result" not in obj:
            return [self._trade(obj)]
        return [self._event(obj)]

    def _event(self, obj: dict[str, Any]) -> Event:
        if "id" in obj and "result" in obj:
            if obj["result"] is None:
                return Control("subscribed", f"request {obj['id']}")
            return Control("ignored", f"reply to request {obj['id']}")
        if "error" in obj:
            return Garbage(f"binance error: {obj['error']}")
        kind = obj.get("e")
        if kind == "trade":
            return self._trade(obj)
        if kind == "serverShutdown":
            return Control("shutdown", "serverShutdown")
        return Garbage(f"unknown event type {kind!r}")

    def _trade(self, obj: dict[str, Any]) -> Event:
        get = obj.get
        symbol, tid, ts = get("s"), get("t"), get("T")
        price, qty, buyer_is_maker = get("p"), get("q"), get("m")
        market = self._markets.get(symbol) if type(symbol) is str else None
        if market is None:
            return Garbage(f"trade of an unknown symbol {symbol!r}")
        # the usual frame, checked inline (one call per field costs more than the JSON);
        # anything else goes through _trade, whose verdict is the same and says why
        if (
            type(tid) is int and tid >= 0 and type(ts) is int and ts >= 0
            and type(price) is str and type(qty) is str and type(buyer_is_maker) is bool
        ):  # fmt: skip
            try:
                p, q = float(price), float(qty)
            except ValueError:
                p = q = 0.0
            if 0.0 < p < math.inf and 0.0 < q < math.inf:
                side = "sell" if buyer_is_maker else "buy"
                return _new(TradeEvent, (market, _new(Trade, (tid, ts, p, q, side))))
        trade = _trade(tid, ts, price, qty, buyer_is_maker)
        if isinstance(trade, str):
            return Garbage(f"binance trade: {trade}")
        return TradeEvent(market, trade)


WIRE = BinanceWire()

# A NamedTuple's own constructor costs twice tuple.__new__ (keyword handling): the fast
# path builds its Trade and TradeEvent from fields already in order.
_new = tuple.__new__


def _trade(tid: Any, ts: Any, price: Any, qty: Any, buyer_is_maker: Any) -> Trade | str:
    """A trade from its fields (WS and REST name them differently), or what is wrong."""
    trade_id, ms = fields.trade_id(tid), fields.epoch_ms(ts)
    p, q = fields.positive(price), fields.positive(qty)
    if trade_id is None:
        return f"bad trade id {tid!r}"
    if ms is None:
        return f"bad time {ts!r}"
    if p is None or q is None:
        return f"bad price/qty {price!r}/{qty!r}"
    if not isinstance(buyer_is_maker, bool):
        return f"bad buyer-is-maker flag {buyer_is_maker!r}"
    return Trade(trade_id, ms, p, q, "sell" if buyer_is_maker else "buy")


def _rest_trade(row: Any) -> Trade | str:
    if not isinstance(row, dict):
        return "not an object"
    get = row.get
    return _trade(get("id"), get("time"), get("price"), get("qty"), get("isBuyerMaker"))


class BinanceHistory(RestHistory):
    """Binance's REST trade history and klines for any market (a TradeHistory)."""

    name = NAME
    limit = LIMIT
    default_rest_url = DEFAULT_REST_URL

    def check_market(self, market: Market) -> None:
        """UnknownMarket (exit 2) unless Binance lists the symbol."""
        symbol = exchange_symbol(market)
        path = "/api/v3/exchangeInfo"
        response = self.rest.get(path, {"symbol": symbol}, weight=WEIGHT_EXCHANGE_INFO)
        body = fields.loads(response.content)
        if response.status_code == 400 and isinstance(body, dict) and body.get("code") == -1121:
            raise self.unknown_market(market, symbol)
        if response.status_code >= 300:
            raise self.rest.reply_error(response, path)
        listed = body.get("symbols") if isinstance(body, dict) else None
        if not isinstance(listed, list) or not any(
            isinstance(s, dict) and s.get("symbol") == symbol for s in listed
        ):
            raise self.unknown_market(market, symbol)

    def first_id_at(self, market: Market, ts_ms: int) -> int | None:
        """The ``f`` of the first aggregate trade at or after ts_ms (an aggregate's trades
        share its time)."""
        path = "/api/v3/aggTrades"
        params = {"symbol": exchange_symbol(market), "startTime": ts_ms, "limit": 1}
        rows = self.rest.rows(path, self.rest.get_json(path, params, weight=WEIGHT_AGG_TRADES))
        if not rows:
            return None
        first = fields.trade_id(rows[0].get("f")) if isinstance(rows[0], dict) else None
        if first is None:
            raise self.rest.bad(f"{path} row without a first trade id: {rows[0]!r}")
        return first

    def after_id(self, market: Market, last_id: int, until_id: int | None) -> Iterator[list[Trade]]:
        path = "/api/v3/historicalTrades"
        while until_id is None or last_id < until_id:
            params = {"symbol": exchange_symbol(market), "fromId": last_id + 1, "limit": TRADES_PAGE}
            rows = self.rest.rows(path, self.rest.get_json(path, params, weight=WEIGHT_HISTORICAL_TRADES))
            page = page_after(self.read_trades(path, rows, _rest_trade), last_id, until_id)
            if page:
                yield page
            if len(rows) < TRADES_PAGE or not page:
                return  # the newest trade reached
            last_id = page[-1].trade_id

    def candles(self, market: Market, start_ms: int, end_ms: int) -> Iterator[list[ExchangeCandle]]:
        """The 1-minute klines with start in [start_ms, end_ms), ascending, in pages."""
        path = "/api/v3/klines"
        start = start_ms - start_ms % MINUTE_MS
        while start < end_ms:
            params = {
                "symbol": exchange_symbol(market),
                "interval": "1m",
                "startTime": start,
                "endTime": end_ms - 1,
                "limit": KLINES_PAGE,
            }
            rows = self.rest.rows(path, self.rest.get_json(path, params, weight=WEIGHT_KLINES))
            now_ms = self.now_ms()
            candles = (self._kline(path, row, now_ms) for row in rows)
            page = [c for c in candles if start <= c.bucket_ms < end_ms]
            if page:
                yield page
            if len(rows) < KLINES_PAGE or not page:
                return
            start = page[-1].bucket_ms + MINUTE_MS

    def _kline(self, path: str, row: Any, now_ms: int) -> ExchangeCandle:
        if isinstance(row, list) and len(row) >= 9:
            opened, close_time, trades = fields.epoch_ms(row[0]), fields.epoch_ms(row[6]), row[8]
            prices = [fields.positive(v) for v in row[1:5]]
            volume, quote_volume = fields.number(row[5]), fields.number(row[7])
            if (
                opened is not None
                and close_time is not None
                and None not in prices
                and volume is not None
                and quote_volume is not None
                and fields.trade_id(trades) is not None
            ):
                o, h, low, c = (float(p or 0) for p in prices)
                closed = close_time < now_ms
                if volume <= 0:
                    return ExchangeCandle(opened, o, h, low, c, volume, trades, closed)
                # the quote volume is rounded to its decimals: so is the VWAP, / volume
                vwap, step = quote_volume / volume, decimal_step(row[7]) / volume
                return ExchangeCandle(opened, o, h, low, c, volume, trades, closed, vwap, step)
        raise self.rest.bad(f"{path} row not a kline: {row!r}")
