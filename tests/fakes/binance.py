"""Binance spot as the fake speaks it: ``/ws/<stream>`` and ``/stream?streams=`` with
SUBSCRIBE, ``@trade`` events, server pings; the REST history and klines endpoints with
``X-MBX-USED-WEIGHT-1M`` and Binance's error bodies."""

from __future__ import annotations

import json
import time
from collections import deque
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from cryptoctl.exchanges.trade import Market, Trade
from tests.fakes.core import Bar, RestReply, RestRequest, Session, bad_request, int_param
from tests.fakes.trades import MINUTE_MS, dec

if TYPE_CHECKING:
    from tests.fakes.core import FakeExchange

AGG_ID_OFFSET = 5_000_000  # an aggTrade id is not a trade id: keep them apart
WEIGHTS = {
    "/api/v3/historicalTrades": 25,
    "/api/v3/trades": 25,
    "/api/v3/aggTrades": 4,
    "/api/v3/klines": 2,
    "/api/v3/exchangeInfo": 20,
}
MAX_CLIENT_MESSAGES_PER_S = 5


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _error(status: int, code: int, msg: str) -> RestReply:
    return RestReply(status, {"code": code, "msg": msg})


BAD_SYMBOL = _error(400, -1121, "Invalid symbol.")
NO_SYMBOL = _error(400, -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
BAD_LIMIT = _error(400, -1130, "Data sent for parameter 'limit' is not valid.")
BAD_NUMBER = _error(400, -1100, "Illegal characters found in a parameter.")


class BinanceDialect:
    kind = "binance"

    def __init__(self, fx: FakeExchange) -> None:
        self.fx = fx
        self._weights: deque[tuple[float, int]] = deque()

    # -- spelling --
    @staticmethod
    def symbol(market: Market) -> str:
        return f"{market.symbol}{market.quote}"

    def stream(self, market: Market) -> str:
        return f"{self.symbol(market).lower()}@trade"

    def _by_stream(self, name: str) -> Market | None:
        return self.fx.market_by(lambda m: self.stream(m) == name)

    def _by_symbol(self, params: dict[str, str]) -> Market:
        symbol = params.get("symbol")
        if not symbol:
            raise bad_request(NO_SYMBOL)
        market = self.fx.market_by(lambda m: self.symbol(m) == symbol)
        if market is None:
            raise bad_request(BAD_SYMBOL)
        return market

    # -- WebSocket --
    def on_open(self, session: Session) -> None:
        session.state["last_ping"] = time.monotonic()
        session.state["recent"] = deque()
        if session.path.startswith("/ws/"):
            names = session.path[len("/ws/") :].split("/")
        elif session.path == "/stream":
            session.state["combined"] = True
            names = [n for n in session.query.get("streams", "").split("/") if n]
        elif session.path in ("/ws", "/stream", "/ws/"):
            names = []
        else:
            session.close(1008, "unknown path")
            return
        markets = [m for m in map(self._by_stream, names) if m is not None]
        session.state["streams"] = list(names)
        if markets:
            session.subscribe(markets)

    def on_message(self, session: Session, text: str) -> None:
        recent: deque[float] = session.state["recent"]
        now = time.monotonic()
        recent.append(now)
        while recent and now - recent[0] > 1.0:
            recent.popleft()
        if len(recent) > MAX_CLIENT_MESSAGES_PER_S:
            session.close(1008, "Too many requests")  # Binance's limit: 5 messages/s
            return
        try:
            msg = json.loads(text)
        except ValueError:
            session.put(_dumps({"error": {"code": 3, "msg": "Invalid JSON"}}))
            return
        method = msg.get("method") if isinstance(msg, dict) else None
        req_id = msg.get("id") if isinstance(msg, dict) else None
        params = msg.get("params", []) if isinstance(msg, dict) else None
        if method not in ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS") or not isinstance(params, list):
            session.put(_dumps({"error": {"code": 2, "msg": "Invalid request"}, "id": req_id}))
            return
        streams: list[str] = session.state["streams"]
        if method == "LIST_SUBSCRIPTIONS":
            session.put(_dumps({"result": list(streams), "id": req_id}))
            return
        names = [p for p in params if isinstance(p, str)]
        markets = [m for m in map(self._by_stream, names) if m is not None]
        ack = _dumps({"result": None, "id": req_id})
        if method == "SUBSCRIBE":
            streams.extend(n for n in names if n not in streams)
            session.subscribe(markets, before=[ack])
        else:
            for name in names:
                if name in streams:
                    streams.remove(name)
            with self.fx.lock:
                session.markets.difference_update(markets)
            session.put(ack)

    def trade_frames(self, session: Session, market: Market, trade: Trade) -> list[str]:
        event = {
            "e": "trade",
            "E": trade.ts + 3,
            "s": self.symbol(market),
            "t": trade.trade_id,
            "p": dec(trade.price, 8),
            "q": dec(trade.qty, 8),
            "T": trade.ts,
            "m": trade.side == "sell",  # the buyer is the maker when the taker sells
            "M": True,
        }
        if session.state.get("combined"):
            return [_dumps({"stream": self.stream(market), "data": event})]
        return [_dumps(event)]

    def idle(self, session: Session, now: float) -> None:
        if now - session.state["last_ping"] >= self.fx.ping_interval_s:
            session.state["last_ping"] = now
            session.ping()

    def shutdown_frames(self) -> list[str]:
        return [_dumps({"e": "serverShutdown", "E": int(time.time() * 1000)})]

    def garbage_frames(self) -> list[str | bytes]:
        return ["this is not json {", _dumps({"e": "mysteryEvent", "E": 1}), b"\xff\xfe binary"]

    # -- REST --
    def route(self, path: str) -> str:
        return path

    def limited(self, status: int, retry_after_s: int) -> RestReply:
        msg = "Too many requests; current limit of IP is 6000 requests per minute."
        if status == 418:
            msg = "Way too many requests; IP banned until further notice."
        return RestReply(status, {"code": -1003, "msg": msg}, {"Retry-After": str(retry_after_s)})

    def _used_weight(self) -> int:
        cutoff = time.monotonic() - 60.0
        while self._weights and self._weights[0][0] < cutoff:
            self._weights.popleft()
        return sum(w for _, w in self._weights)

    def reply_headers(self, route: str) -> dict[str, str]:
        with self.fx.lock:
            self._weights.append((time.monotonic(), WEIGHTS.get(route, 1)))
            used = self._used_weight()
        return {"X-MBX-USED-WEIGHT-1M": str(used)}

    def rest(self, request: RestRequest) -> RestReply:
        with self.fx.lock:
            over = self._used_weight() >= self.fx.weight_limit
        if over:
            return self.limited(429, 60 - int(time.time()) % 60)
        handler = {
            "/api/v3/historicalTrades": self._historical_trades,
            "/api/v3/trades": self._trades,
            "/api/v3/aggTrades": self._agg_trades,
            "/api/v3/klines": self._klines,
            "/api/v3/exchangeInfo": self._exchange_info,
            "/api/v3/ping": self._ping,
        }.get(request.path)
        if handler is None:
            return RestReply(404, "<html><body><h1>404 Not found</h1></body></html>")
        return handler(request.params)

    @staticmethod
    def _ping(params: dict[str, str]) -> RestReply:
        return RestReply(200, {})  # Binance's connectivity test: weight 1, an empty object

    @staticmethod
    def _limit(params: dict[str, str], default: int, top: int) -> int:
        limit = int_param(params, "limit", BAD_NUMBER, default)
        assert limit is not None
        if not 1 <= limit <= top:
            raise bad_request(BAD_LIMIT)
        return limit

    @staticmethod
    def _trade_row(trade: Trade) -> dict[str, Any]:
        price, qty = dec(trade.price, 8), dec(trade.qty, 8)
        return {
            "id": trade.trade_id,
            "price": price,
            "qty": qty,
            "quoteQty": f"{Decimal(price) * Decimal(qty):.8f}",
            "time": trade.ts,
            "isBuyerMaker": trade.side == "sell",
            "isBestMatch": True,
        }

    def _historical_trades(self, params: dict[str, str]) -> RestReply:
        market = self._by_symbol(params)
        limit = self._limit(params, 500, 1000)
        from_id = int_param(params, "fromId", BAD_NUMBER)
        if from_id is None:
            trades = self.fx.rest_trades(market)[-limit:]
        else:
            trades = self.fx.rest_trades_from_id(market, from_id, limit)
        return RestReply(200, [self._trade_row(t) for t in trades])

    def _trades(self, params: dict[str, str]) -> RestReply:
        market = self._by_symbol(params)
        limit = self._limit(params, 500, 1000)
        return RestReply(200, [self._trade_row(t) for t in self.fx.rest_trades(market)[-limit:]])

    def _agg_trades(self, params: dict[str, str]) -> RestReply:
        market = self._by_symbol(params)
        limit = self._limit(params, 500, 1000)
        from_id = int_param(params, "fromId", BAD_NUMBER)
        start = int_param(params, "startTime", BAD_NUMBER)
        end = int_param(params, "endTime", BAD_NUMBER)
        if start is not None and end is not None and end - start > 3_600_000:
            raise bad_request(_error(400, -1127, "More than 1 hours between startTime and endTime."))
        if from_id is not None:
            trades = self.fx.rest_trades_from_id(market, from_id - AGG_ID_OFFSET, limit)
        elif start is not None or end is not None:
            lo = start if start is not None else end - 3_600_000  # type: ignore[operator]
            hi = end if end is not None else start + 3_600_000  # type: ignore[operator]
            trades = self.fx.rest_trades_between(market, lo, hi)[:limit]
        else:
            trades = self.fx.rest_trades(market)[-limit:]
        rows = [
            {
                "a": t.trade_id + AGG_ID_OFFSET,
                "p": dec(t.price, 8),
                "q": dec(t.qty, 8),
                "f": t.trade_id,
                "l": t.trade_id,
                "T": t.ts,
                "m": t.side == "sell",
                "M": True,
            }
            for t in trades
        ]
        return RestReply(200, rows)

    @staticmethod
    def _kline(bar: Bar) -> list[Any]:
        return [
            bar.start_ms,
            dec(bar.open, 8),
            dec(bar.high, 8),
            dec(bar.low, 8),
            dec(bar.close, 8),
            f"{bar.volume:.8f}",
            bar.start_ms + MINUTE_MS - 1,
            f"{bar.quote_volume:.8f}",
            bar.trade_count,
            f"{bar.buy_volume:.8f}",
            f"{bar.buy_quote_volume:.8f}",
            "0",
        ]

    def _klines(self, params: dict[str, str]) -> RestReply:
        market = self._by_symbol(params)
        if params.get("interval") != "1m":
            raise bad_request(_error(400, -1120, "Invalid interval."))
        limit = self._limit(params, 500, 1000)
        start = int_param(params, "startTime", BAD_NUMBER)
        end = int_param(params, "endTime", BAD_NUMBER)
        bars = [
            b
            for b in self.fx.bars(market)
            if (start is None or b.start_ms >= start) and (end is None or b.start_ms <= end)
        ]
        bars = bars[:limit] if start is not None else bars[-limit:]
        return RestReply(200, [self._kline(b) for b in bars])

    def _exchange_info(self, params: dict[str, str]) -> RestReply:
        markets = [self._by_symbol(params)] if "symbol" in params else list(self.fx.markets)
        symbols = [
            {
                "symbol": self.symbol(m),
                "status": "TRADING",
                "baseAsset": m.symbol,
                "baseAssetPrecision": 8,
                "quoteAsset": m.quote,
                "quotePrecision": 8,
                "quoteAssetPrecision": 8,
                "isSpotTradingAllowed": True,
                "permissions": [],
                "permissionSets": [["SPOT"]],
            }
            for m in markets
        ]
        return RestReply(
            200,
            {
                "timezone": "UTC",
                "serverTime": int(time.time() * 1000),
                "rateLimits": [
                    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000}
                ],
                "exchangeFilters": [],
                "symbols": symbols,
            },
        )
