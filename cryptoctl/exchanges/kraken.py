"""Kraken spot: the WebSocket v2 ``trade`` channel and the public REST history.

Spellings: our ``BTC/USD`` is ``BTC/USD`` on WebSocket v2 and ``XBTUSD`` in REST (Kraken
calls bitcoin XBT and dogecoin XDG there; :func:`rest_asset` / :func:`our_asset` map
both ways). REST replies key their rows by yet another name (``XXBTZUSD``): the client
takes the one key that is not ``last``. Taker side: ``side`` (WS) and ``b``/``s`` (REST)
are the taker's.

The wire maps ``BTC/USD`` back to the markets registered by :meth:`KrakenWire.subscribe`
/ :meth:`KrakenWire.stream_url` (or :meth:`KrakenWire.for_markets`); a symbol never
registered is Garbage.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import orjson

from cryptoctl.exchanges import fields
from cryptoctl.exchanges.rest import ExchangeCandle, RateLimit, RestHistory, decimal_step, page_after
from cryptoctl.exchanges.trade import Market, Trade
from cryptoctl.exchanges.wire import Control, Event, Garbage, MarketWire, TradeEvent

NAME = "kraken"
DEFAULT_WS_URL = "wss://ws.kraken.com/v2"
DEFAULT_REST_URL = "https://api.kraken.com"

LIMIT = RateLimit(requests=1, window_s=1.0)  # public endpoints: about 1 request/s sustained
TRADES_PAGE = 1000  # rows per Trades reply at most
MINUTE_MS = 60_000
NS_PER_MS = 1_000_000

_REST_ASSET = {"BTC": "XBT", "DOGE": "XDG"}
_OUR_ASSET = {v: k for k, v in _REST_ASSET.items()}
# Errors in a 200 reply that mean "later": retried like a 5xx.
_TRANSIENT = (
    "EAPI:Rate limit exceeded",
    "EGeneral:Too many requests",
    "EService:Unavailable",
    "EService:Busy",
)


def rest_asset(asset: str) -> str:
    return _REST_ASSET.get(asset.upper(), asset.upper())


def our_asset(asset: str) -> str:
    return _OUR_ASSET.get(asset.upper(), asset.upper())


def exchange_symbol(market: Market) -> str:
    """The WebSocket v2 symbol: ``BTC/USD``."""
    return f"{market.symbol}/{market.quote}".upper()


def rest_pair(market: Market) -> str:
    """The REST pair: ``XBTUSD``."""
    return f"{rest_asset(market.symbol)}{rest_asset(market.quote)}"


def _ws_key(symbol: str) -> str:
    """``XBT/USD`` and ``BTC/USD`` are one market."""
    base, _, quote = symbol.upper().partition("/")
    return f"{our_asset(base)}/{our_asset(quote)}"


class KrakenWire(MarketWire):
    name = NAME
    default_ws_url = DEFAULT_WS_URL
    default_rest_url = DEFAULT_REST_URL
    default_quote = "USD"
    silence_s = 5.0  # a heartbeat about every second when idle
    max_connection_s: float | None = None

    def exchange_symbol(self, market: Market) -> str:
        return exchange_symbol(market)

    def market_key(self, market: Market) -> str:
        return _ws_key(exchange_symbol(market))

    def subscribe_frames(self, markets: Sequence[Market]) -> list[str]:
        symbols = [exchange_symbol(m) for m in markets]
        message = {
            "method": "subscribe",
            "params": {"channel": "trade", "symbol": symbols, "snapshot": False},
            "req_id": 1,
        }
        return [orjson.dumps(message).decode()]

    def ping(self) -> str | None:
        return '{"method":"ping"}'

    def parse(self, frame: str | bytes) -> list[Event]:
        obj = fields.loads(frame)
        if obj is fields.NOT_JSON:
            return [Garbage("not JSON")]
        if not isinstance(obj, dict):
            return [Garbage("not a JSON object")]
        if "method" in obj:
            return [_reply(obj)]
        channel = obj.get("channel")
        if channel == "trade":
            return self._trades(obj)
        if channel == "heartbeat":
            return [Control("heartbeat")]
        if channel == "status":
            return [Control("ignored", "status")]
        return [Garbage(f"unknown channel {channel!r}")]

    def _trades(self, obj: dict[str, Any]) -> list[Event]:
        data = obj.get("data")
        if obj.get("type") not in ("update", "snapshot") or not isinstance(data, list):
            return [Garbage(f"trade message of type {obj.get('type')!r} without a data list")]
        return [self._trade(entry) for entry in data]

    def _trade(self, entry: Any) -> Event:
        if not isinstance(entry, dict):
            return Garbage("trade entry is not an object")
        symbol = entry.get("symbol")
        market = self._markets.get(_ws_key(symbol)) if isinstance(symbol, str) else None
        if market is None:
            return Garbage(f"trade of an unknown symbol {symbol!r}")
        trade = _trade(entry.get("trade_id"), entry.get("timestamp"), entry.get("price"), entry.get("qty"))
        if isinstance(trade, str):
            return Garbage(f"kraken trade: {trade}")
        taker = fields.side(entry.get("side"))
        if taker is None:
            return Garbage(f"kraken trade: bad side {entry.get('side')!r}")
        return TradeEvent(market, trade._replace(side=taker))


def _reply(obj: dict[str, Any]) -> Event:
    method = obj.get("method")
    if method == "pong":
        return Control("pong")
    if obj.get("success") is False:
        return Garbage(f"kraken {method} failed: {obj.get('error')}")
    if method == "subscribe":
        result = obj.get("result")
        symbol = result.get("symbol") if isinstance(result, dict) else None
        return Control("subscribed", str(symbol or ""))
    return Control("ignored", str(method))


WIRE = KrakenWire()


def _trade(tid: Any, ts: Any, price: Any, qty: Any) -> Trade | str:
    """A trade without its side (the caller reads it), or what is wrong with it."""
    trade_id, p, q = fields.trade_id(tid), fields.positive(price), fields.positive(qty)
    # WS v2 sends ISO-8601 text; REST epoch seconds (a JSON number read as its text).
    ms = fields.iso_ms(ts) if isinstance(ts, str) and "T" in ts else fields.seconds_ms(ts)
    if trade_id is None:
        return f"bad trade_id {tid!r}"
    if ms is None:
        return f"bad time {ts!r}"
    if p is None or q is None:
        return f"bad price/qty {price!r}/{qty!r}"
    return Trade(trade_id, ms, p, q, "buy")


def _rest_trade(row: Any) -> Trade | str:
    """A Trades row: ``[price, volume, time, b/s, market/limit, misc, trade_id]``."""
    if not isinstance(row, list) or len(row) < 7:
        return "not a trade"
    trade = _trade(row[6], row[2], row[0], row[1])
    side = fields.side({"b": "buy", "s": "sell"}.get(row[3]) if isinstance(row[3], str) else None)
    if isinstance(trade, str):
        return trade
    if side is None:
        return f"bad side {row[3]!r}"
    return trade._replace(side=side)


def _transient(response: httpx.Response) -> str | None:
    body = fields.loads(response.content)
    errors = body.get("error") if isinstance(body, dict) else None
    if isinstance(errors, list):
        for error in errors:
            if isinstance(error, str) and error.startswith(_TRANSIENT):
                return f"Kraken said {error}"
    return None


class KrakenHistory(RestHistory):
    """Kraken's REST trades (paged by a nanosecond ``since`` cursor) and OHLC (a TradeHistory)."""

    name = NAME
    limit = LIMIT
    default_rest_url = DEFAULT_REST_URL
    floats_as_text = True  # trade times: epoch seconds to 7 decimals, floored on the digits

    def retry_body(self, response: httpx.Response) -> str | None:
        return _transient(response)

    def _result(self, path: str, params: dict[str, Any]) -> tuple[list[Any], Any]:
        """(the rows under the pair's key, the ``last`` cursor) of a Trades/OHLC reply."""
        body = self.rest.get_json(path, params)
        if not isinstance(body, dict) or not isinstance(body.get("result"), dict):
            errors = body.get("error") if isinstance(body, dict) else None
            raise self.rest.bad(f"{path} for {params.get('pair')}: {errors or 'no result'}")
        result = body["result"]
        keys = [k for k in result if k != "last"]
        rows = result[keys[0]] if len(keys) == 1 else None
        return self.rest.rows(path, rows), result.get("last")

    def check_market(self, market: Market) -> None:
        pair = rest_pair(market)
        body = self.rest.get_json("/0/public/AssetPairs", {"pair": pair})
        errors = body.get("error") if isinstance(body, dict) else None
        result = body.get("result") if isinstance(body, dict) else None
        if errors or not result:
            if isinstance(errors, list) and any("Unknown asset pair" in str(e) for e in errors):
                raise self.unknown_market(market, pair)
            raise self.rest.bad(f"/0/public/AssetPairs for {pair}: {errors or 'no result'}")

    def trades_after(
        self, market: Market, after: Trade, *, until_id: int | None = None
    ) -> Iterator[list[Trade]]:
        # since = the after trade's time (floored, minus 1 ns: ``since`` may be exclusive)
        return self._walk(market, after.ts * NS_PER_MS - 1, after.trade_id, 0, until_id)

    def trades_since(self, market: Market, ts_ms: int) -> Iterator[list[Trade]]:
        return self._walk(market, ts_ms * NS_PER_MS - 1, -1, ts_ms, None)

    def _walk(
        self, market: Market, since: int, last_id: int, min_ts: int, until_id: int | None
    ) -> Iterator[list[Trade]]:
        path = "/0/public/Trades"
        while until_id is None or last_id < until_id:
            rows, cursor = self._result(path, {"pair": rest_pair(market), "since": since})
            page = page_after(self.read_trades(path, rows, _rest_trade), last_id, until_id, min_ts)
            if page:
                yield page
                last_id = page[-1].trade_id
            next_since = int(cursor) if isinstance(cursor, str | int) and str(cursor).isdigit() else None
            # Go on from 1 ns before the cursor: were ``since`` exclusive, trades sharing the
            # last row's time but cut off by the page end would be skipped; ids drop repeats.
            if len(rows) < TRADES_PAGE or next_since is None or next_since - 1 <= since:
                return  # the newest trade reached (or no cursor to go on)
            since = next_since - 1

    def candles(self, market: Market, start_ms: int, end_ms: int) -> Iterator[list[ExchangeCandle]]:
        """1-minute OHLC with start in [start_ms, end_ms): one page, as Kraken keeps only
        the 720 most recent minutes (older ones are simply absent). The last row is still
        forming (closed=False)."""
        path = "/0/public/OHLC"
        since_s = (start_ms - start_ms % MINUTE_MS) // 1000 - 60
        rows, _ = self._result(path, {"pair": rest_pair(market), "interval": 1, "since": since_s})
        now_ms = self.now_ms()
        candles = [self._candle(path, row, now_ms) for row in rows]
        if candles:
            candles[-1] = candles[-1]._replace(closed=False)
        page = [c for c in candles if start_ms <= c.bucket_ms < end_ms]
        if page:
            yield page

    def _candle(self, path: str, row: Any, now_ms: int) -> ExchangeCandle:
        if isinstance(row, list) and len(row) >= 8 and fields.trade_id(row[0]) is not None:
            o, h, low, c = (fields.positive(v) for v in row[1:5])
            volume, count = fields.number(row[6]), fields.trade_id(row[7])
            if o and h and low and c and volume is not None:
                bucket = row[0] * 1000
                closed = bucket + MINUTE_MS <= now_ms
                vwap = fields.positive(row[5]) if volume > 0 else None
                if vwap is None:  # an empty minute's vwap column means nothing
                    return ExchangeCandle(bucket, o, h, low, c, volume, count, closed)
                # published at the pair's price precision (XBTUSD: one decimal)
                return ExchangeCandle(bucket, o, h, low, c, volume, count, closed, vwap, decimal_step(row[5]))
        raise self.rest.bad(f"{path} row not an OHLC row: {row!r}")
