"""Coinbase Exchange (public feed): the ``matches`` channel and the public REST history.

Spellings: our ``BTC/USD`` is the product ``BTC-USD`` everywhere. Taker side: Coinbase's
``side`` is the **maker's** side (in ``match``, ``last_match`` and REST trades), so the
taker's is the opposite. A ``last_match`` is a trade the client may already have: it is a
TradeEvent like any other, and the continuity layer drops it if it is a duplicate.

The wire maps ``BTC-USD`` back to the markets registered by :meth:`CoinbaseWire.subscribe`
/ :meth:`CoinbaseWire.stream_url` (or :meth:`CoinbaseWire.for_markets`); a product never
registered is Garbage.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from cryptoctl.exchanges import fields
from cryptoctl.exchanges.rest import ExchangeCandle, RateLimit, RestHistory, page_after
from cryptoctl.exchanges.trade import Market, Trade
from cryptoctl.exchanges.wire import Control, Event, Garbage, MarketWire, TradeEvent

NAME = "coinbase"
DEFAULT_WS_URL = "wss://ws-feed.exchange.coinbase.com"
DEFAULT_REST_URL = "https://api.exchange.coinbase.com"

LIMIT = RateLimit(requests=10, window_s=1.0)  # public: about 10 requests/s per IP
TRADES_PAGE = 1000
CANDLES_PAGE = 300  # rows per candles request
MINUTE_MS = 60_000


def exchange_symbol(market: Market) -> str:
    return f"{market.symbol}-{market.quote}".upper()


class CoinbaseWire(MarketWire):
    name = NAME
    default_ws_url = DEFAULT_WS_URL
    default_rest_url = DEFAULT_REST_URL
    default_quote = "USD"
    silence_s = 5.0  # a heartbeat per product per second
    max_connection_s: float | None = None

    def exchange_symbol(self, market: Market) -> str:
        return exchange_symbol(market)

    def subscribe_frames(self, markets: Sequence[Market]) -> list[str]:
        message = {
            "type": "subscribe",
            "product_ids": [exchange_symbol(m) for m in markets],
            "channels": ["matches", "heartbeat"],
        }
        return [orjson.dumps(message).decode()]

    def ping(self) -> str | None:
        return None  # heartbeats come on their own

    def parse(self, frame: str | bytes) -> list[Event]:
        obj = fields.loads(frame)
        if obj is fields.NOT_JSON:
            return [Garbage("not JSON")]
        if not isinstance(obj, dict):
            return [Garbage("not a JSON object")]
        kind = obj.get("type")
        if kind in ("match", "last_match"):
            return [self._match(obj)]
        if kind == "heartbeat":
            return [Control("heartbeat", str(obj.get("product_id", "")))]
        if kind == "subscriptions":
            return [Control("subscribed", orjson.dumps(obj.get("channels")).decode())]
        if kind == "error":
            return [Garbage(f"coinbase error: {obj.get('message')}: {obj.get('reason')}")]
        return [Garbage(f"unknown message type {kind!r}")]

    def _match(self, obj: dict[str, Any]) -> Event:
        product = obj.get("product_id")
        market = self._markets.get(product) if isinstance(product, str) else None
        if market is None:
            return Garbage(f"match of an unknown product {product!r}")
        trade = _trade(obj)
        if isinstance(trade, str):
            return Garbage(f"coinbase {obj.get('type')}: {trade}")
        return TradeEvent(market, trade)


WIRE = CoinbaseWire()


def _trade(obj: dict[str, Any]) -> Trade | str:
    """A match (WS) or a REST trade row -> a Trade, or what is wrong with it."""
    trade_id, ms = fields.trade_id(obj.get("trade_id")), fields.iso_ms(obj.get("time"))
    price, size = fields.positive(obj.get("price")), fields.positive(obj.get("size"))
    maker = fields.side(obj.get("side"))
    if trade_id is None:
        return f"bad trade_id {obj.get('trade_id')!r}"
    if ms is None:
        return f"bad time {obj.get('time')!r}"
    if price is None or size is None:
        return f"bad price/size {obj.get('price')!r}/{obj.get('size')!r}"
    if maker is None:
        return f"bad side {obj.get('side')!r}"
    return Trade(trade_id, ms, price, size, fields.opposite(maker))


def _rest_trade(row: Any) -> Trade | str:
    return _trade(row) if isinstance(row, dict) else "not an object"


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class CoinbaseHistory(RestHistory):
    """Coinbase's REST trades and candles (a TradeHistory).

    Trades come newest first, ``after=<id>`` giving the older ones below ``id``. Trade
    ids are consecutive per product, so instead of walking back from the newest trade
    and holding everything in memory to reverse it, each page is asked for directly:
    ``after=X+1001`` returns ids ``X+1000 .. X+1``, reversed to ascending. Memory is one
    page whatever the range; one extra request (the newest page) says where to stop.
    """

    name = NAME
    limit = LIMIT
    default_rest_url = DEFAULT_REST_URL

    def check_market(self, market: Market) -> None:
        product = exchange_symbol(market)
        path = f"/products/{product}"
        response = self.rest.get(path)
        if response.status_code in (400, 404):
            raise self.unknown_market(market, product)
        if response.status_code >= 300:
            raise self.rest.reply_error(response, path)

    def _page(self, market: Market, before_id: int | None, limit: int = TRADES_PAGE) -> list[Trade]:
        """Up to ``limit`` trades with id < before_id (the newest ones without), ascending."""
        path = f"/products/{exchange_symbol(market)}/trades"
        params: dict[str, Any] = {"limit": limit}
        if before_id is not None:
            params["after"] = before_id
        rows = self.rest.rows(path, self.rest.get_json(path, params))
        return self.read_trades(path, rows, _rest_trade)

    def after_id(self, market: Market, last_id: int, until_id: int | None) -> Iterator[list[Trade]]:
        newest_page = self._page(market, None)
        if not newest_page:
            return
        top = newest_page[-1].trade_id if until_id is None else min(until_id, newest_page[-1].trade_id)
        while last_id < top:
            high = min(last_id + TRADES_PAGE, top)
            # the newest page may already hold them
            held = newest_page[0].trade_id <= last_id + 1
            rows = newest_page if held else self._page(market, high + 1)
            page = page_after(rows, last_id, high)
            if page:
                yield page
            last_id = high

    def first_id_at(self, market: Market, ts_ms: int) -> int | None:
        """The id of the first trade at or after ts_ms: probe back from the newest by
        doubling steps, then bisect (trade times never decrease with the id)."""
        newest = self._page(market, None)
        if not newest or newest[-1].ts < ts_ms:
            return None
        if newest[0].ts < ts_ms:
            return next(t.trade_id for t in newest if t.ts >= ts_ms)
        high, step = newest[0].trade_id, TRADES_PAGE
        low = 0  # an id whose trade (if any) is before ts_ms
        while high - step > 0:
            probe = self._at_or_below(market, high - step)
            if probe is None or probe.ts < ts_ms:
                low = high - step
                break
            high, step = probe.trade_id, step * 2
        while high - low > 1:
            mid = (low + high) // 2
            probe = self._at_or_below(market, mid)
            if probe is None or probe.ts < ts_ms:
                low = mid
            else:
                high = probe.trade_id
        return high

    def _at_or_below(self, market: Market, trade_id: int) -> Trade | None:
        page = self._page(market, trade_id + 1, limit=1)
        return page[-1] if page else None

    def candles(self, market: Market, start_ms: int, end_ms: int) -> Iterator[list[ExchangeCandle]]:
        """1-minute candles with start in [start_ms, end_ms), ascending, a page per 300
        minutes (no candle for a minute without trades)."""
        path = f"/products/{exchange_symbol(market)}/candles"
        start = start_ms - start_ms % MINUTE_MS
        while start < end_ms:
            stop = min(end_ms, start + CANDLES_PAGE * MINUTE_MS)
            params = {"granularity": 60, "start": _iso(start), "end": _iso(stop - MINUTE_MS)}
            rows = self.rest.rows(path, self.rest.get_json(path, params))
            now_ms = self.now_ms()
            candles = (self._candle(path, r, now_ms) for r in rows)
            page = sorted(c for c in candles if start <= c.bucket_ms < stop)
            if page:
                yield page
            start = stop

    def _candle(self, path: str, row: Any, now_ms: int) -> ExchangeCandle:
        if isinstance(row, list) and len(row) >= 6 and fields.trade_id(row[0]) is not None:
            low, high, o, c = (fields.positive(v) for v in row[1:5])
            volume = fields.number(row[5])
            if low and high and o and c and volume is not None:
                bucket = row[0] * 1000
                return ExchangeCandle(bucket, o, high, low, c, volume, None, bucket + MINUTE_MS <= now_ms)
        raise self.rest.bad(f"{path} row not a candle: {row!r}")
