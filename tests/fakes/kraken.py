"""Kraken spot as the fake speaks it: WebSocket v2 (status, subscribe acks, trade
updates with JSON-number price/qty, heartbeats when idle, ping/pong); REST Trades (``since``
cursor in ns, ``last``), OHLC (720 most recent, empty minutes with count 0, last one
uncommitted) and AssetPairs, keyed by the REST pair name (``XXBTZUSD``)."""

from __future__ import annotations

import json
import re
import time
from bisect import bisect_right
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from cryptoctl.exchanges.trade import Market, Trade
from tests.fakes.core import Bar, RestReply, RestRequest, Session, bad_request, int_param
from tests.fakes.trades import dec, iso_us

if TYPE_CHECKING:
    from tests.fakes.core import FakeExchange

# Our asset -> (Kraken altname, Kraken's legacy X/Z-prefixed name)
ASSETS = {
    "BTC": ("XBT", "XXBT"),
    "ETH": ("ETH", "XETH"),
    "LTC": ("LTC", "XLTC"),
    "XRP": ("XRP", "XXRP"),
    "USD": ("USD", "ZUSD"),
    "EUR": ("EUR", "ZEUR"),
}
OHLC_ROWS = 720
MAX_TRADES = 1000
_RAW = "@@raw@@"


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _number(value: float) -> str:
    """A JSON number in plain decimal notation (0.00001279, never 1.279e-05); the marker
    is replaced by the bare number when the frame is written (see :func:`_raw_json`)."""
    return _RAW + format(Decimal(repr(value)), "f")


def _raw_json(obj: Any) -> str:
    return re.sub(f'"{_RAW}(-?[0-9.]+)"', r"\1", _dumps(obj))


def _seconds(ts_us: int) -> str:
    """Epoch seconds with the microseconds, as a JSON number written from integers."""
    return f"{_RAW}{ts_us // 1_000_000}.{ts_us % 1_000_000:06d}"


def _now_iso() -> str:
    return iso_us(time.time_ns() // 1000)


def _error(*errors: str) -> RestReply:
    return RestReply(200, {"error": list(errors)})  # Kraken answers errors with HTTP 200


UNKNOWN_PAIR = _error("EQuery:Unknown asset pair")
BAD_ARGUMENTS = _error("EGeneral:Invalid arguments")


def altname(market: Market) -> str:
    return ASSETS.get(market.symbol, (market.symbol,))[0] + ASSETS.get(market.quote, (market.quote,))[0]


def rest_name(market: Market) -> str:
    """The key Kraken's REST results use: ``XXBTZUSD`` for legacy pairs, else the altname."""
    if market.symbol in ASSETS and market.quote in ASSETS:
        return ASSETS[market.symbol][1] + ASSETS[market.quote][1]
    return altname(market)


def ws_symbol(market: Market) -> str:
    return f"{market.symbol}/{market.quote}"  # v2 spells BTC, not XBT


class KrakenDialect:
    kind = "kraken"

    def __init__(self, fx: FakeExchange) -> None:
        self.fx = fx
        self._connection_ids = 0

    def _by_ws(self, symbol: str) -> Market | None:
        return self.fx.market_by(lambda m: ws_symbol(m) == symbol)

    def _by_pair(self, params: dict[str, str]) -> Market:
        pair = params.get("pair", "")
        market = self.fx.market_by(lambda m: pair in (altname(m), rest_name(m)))
        if market is None:
            raise bad_request(UNKNOWN_PAIR)
        return market

    # -- WebSocket v2 --
    def on_open(self, session: Session) -> None:
        self._connection_ids += 1
        session.state["subscribed"] = False
        session.put(
            _dumps(
                {
                    "channel": "status",
                    "type": "update",
                    "data": [
                        {
                            "api_version": "v2",
                            "connection_id": 1_000_000 + self._connection_ids,
                            "system": "online",
                            "version": "2.0.10",
                        }
                    ],
                }
            )
        )

    def _trade_item(self, market: Market, trade: Trade) -> dict[str, Any]:
        return {
            "symbol": ws_symbol(market),
            "side": trade.side,  # the taker's
            "price": _number(trade.price),  # JSON numbers in v2, written in plain decimals
            "qty": _number(trade.qty),
            "ord_type": "market" if trade.trade_id % 3 == 0 else "limit",
            "trade_id": trade.trade_id,
            "timestamp": iso_us(self.fx.time_us(market, trade)),
        }

    def on_message(self, session: Session, text: str) -> None:
        time_in = _now_iso()
        try:
            msg = json.loads(text)
        except ValueError:
            msg = None
        if not isinstance(msg, dict):
            session.put(_dumps({"error": "Malformed request", "success": False, "time_in": time_in}))
            return
        method, req_id = msg.get("method"), msg.get("req_id")
        stamp = {"time_in": time_in, "time_out": _now_iso()}
        if req_id is not None:
            stamp["req_id"] = req_id
        if method == "ping":
            session.put(_dumps({"method": "pong", **stamp}))
            return
        if method not in ("subscribe", "unsubscribe"):
            session.put(_dumps({"error": "Method not found", "method": method, "success": False, **stamp}))
            return
        params = msg.get("params") if isinstance(msg.get("params"), dict) else {}
        assert isinstance(params, dict)
        if params.get("channel") != "trade":
            session.put(
                _dumps(
                    {"error": "Channel not served by the fake", "method": method, "success": False, **stamp}
                )
            )
            return
        snapshot = bool(params.get("snapshot", False))
        acks: list[str] = []
        markets: list[Market] = []
        for symbol in params.get("symbol") or []:
            market = self._by_ws(symbol)
            if market is None:
                acks.append(
                    _dumps(
                        {
                            "error": f"Currency pair not supported {symbol}",
                            "method": method,
                            "success": False,
                            "symbol": symbol,
                            **stamp,
                        }
                    )
                )
                continue
            result = {"channel": "trade", "symbol": symbol}
            if method == "subscribe":
                result["snapshot"] = snapshot
            acks.append(_dumps({"method": method, "result": result, "success": True, **stamp}))
            markets.append(market)
        if method == "unsubscribe":
            with self.fx.lock:
                session.markets.difference_update(markets)
            for ack in acks:
                session.put(ack)
            return
        with self.fx.lock:
            if snapshot:
                for market in markets:
                    items = [self._trade_item(market, t) for t in self.fx.published[market][-50:]]
                    acks.append(_raw_json({"channel": "trade", "type": "snapshot", "data": items}))
            session.state["subscribed"] = True
            session.subscribe(markets, before=acks)

    def trade_frames(self, session: Session, market: Market, trade: Trade) -> list[str]:
        return [_raw_json({"channel": "trade", "type": "update", "data": [self._trade_item(market, trade)]})]

    def idle(self, session: Session, now: float) -> None:
        if session.state["subscribed"] and now - session.last_sent >= self.fx.heartbeat_s:
            session.send_now(_dumps({"channel": "heartbeat"}))

    def shutdown_frames(self) -> list[str]:
        return [_dumps({"channel": "status", "type": "update", "data": [{"system": "maintenance"}]})]

    def garbage_frames(self) -> list[str | bytes]:
        return ["not json at all", _dumps({"channel": "mystery", "type": "update", "data": []})]

    # -- REST --
    def route(self, path: str) -> str:
        return path

    def limited(self, status: int, retry_after_s: int) -> RestReply:
        headers = {"Retry-After": str(retry_after_s)}
        if status == 418:
            return RestReply(403, {"error": ["EGeneral:Permission denied"]}, headers)
        return RestReply(429, {"error": ["EGeneral:Too many requests"]}, headers)

    def reply_headers(self, route: str) -> dict[str, str]:
        return {}

    def rest(self, request: RestRequest) -> RestReply:
        handler = {
            "/0/public/Trades": self._trades,
            "/0/public/OHLC": self._ohlc,
            "/0/public/AssetPairs": self._asset_pairs,
        }.get(request.path)
        if handler is None:
            return _error("EGeneral:Unknown method")
        return handler(request.params)

    def cursors(self, market: Market) -> list[tuple[int, Trade]]:
        """Each published trade's ``since`` cursor (ns): its microsecond time, then its rank
        among trades of the same microsecond, so a page can end between them."""
        with self.fx.lock:
            trades = list(self.fx.published[market])
        out: list[tuple[int, Trade]] = []
        prev_us, rank = -1, 0
        for trade in trades:
            us = self.fx.time_us(market, trade)
            rank = rank + 1 if us == prev_us else 0
            prev_us = us
            out.append((us * 1000 + rank, trade))
        return out

    def _trades(self, params: dict[str, str]) -> RestReply:
        market = self._by_pair(params)
        count = int_param(params, "count", BAD_ARGUMENTS, MAX_TRADES)
        since = int_param(params, "since", BAD_ARGUMENTS)
        assert count is not None
        count = max(1, min(count, MAX_TRADES))
        cursors = [(c, t) for c, t in self.cursors(market) if not self.fx.faults.in_hole(market, t.trade_id)]
        if since is None:
            page = cursors[-count:]
        else:
            if since < 100_000_000_000:  # seconds, as Kraken also accepts
                since *= 1_000_000_000
            start = bisect_right(cursors, since, key=lambda ct: ct[0])
            page = cursors[start : start + count]
        rows = [
            [
                dec(t.price, 5),
                dec(t.qty, 8),
                _seconds(self.fx.time_us(market, t)),
                "b" if t.side == "buy" else "s",
                "m" if t.trade_id % 3 == 0 else "l",
                "",
                t.trade_id,
            ]
            for _, t in page
        ]
        last = page[-1][0] if page else (since if since is not None else 0)
        # the time is a JSON number with microseconds: written as text, not via a float
        return RestReply(
            200, _raw_json({"error": [], "result": {rest_name(market): rows, "last": str(last)}})
        )

    @staticmethod
    def _ohlc_row(bar: Bar) -> list[Any]:
        vwap = bar.quote_volume / bar.volume if bar.trade_count else None
        return [
            bar.start_ms // 1000,
            dec(bar.open, 5),
            dec(bar.high, 5),
            dec(bar.low, 5),
            dec(bar.close, 5),
            f"{vwap:.5f}" if vwap is not None else dec(bar.close, 5),
            f"{bar.volume:.8f}",
            bar.trade_count,
        ]

    def _ohlc(self, params: dict[str, str]) -> RestReply:
        market = self._by_pair(params)
        interval = int_param(params, "interval", BAD_ARGUMENTS, 1)
        if interval != 1:
            raise bad_request(_error("EGeneral:Invalid arguments:interval (the fake serves 1)"))
        since = int_param(params, "since", BAD_ARGUMENTS)
        bars = self.fx.bars(market)[-OHLC_ROWS:]
        last = bars[-2].start_ms // 1000 if len(bars) >= 2 else 0  # the newest committed one
        if since is not None:
            bars = [b for b in bars if b.start_ms // 1000 > since]
        rows = [self._ohlc_row(b) for b in bars]
        return RestReply(200, {"error": [], "result": {rest_name(market): rows, "last": last}})

    def _asset_pairs(self, params: dict[str, str]) -> RestReply:
        markets = [self._by_pair(params)] if params.get("pair") else list(self.fx.markets)
        result = {
            rest_name(m): {
                "altname": altname(m),
                "wsname": f"{ASSETS.get(m.symbol, (m.symbol,))[0]}/{ASSETS.get(m.quote, (m.quote,))[0]}",
                "aclass_base": "currency",
                "base": ASSETS.get(m.symbol, (m.symbol, m.symbol))[1],
                "aclass_quote": "currency",
                "quote": ASSETS.get(m.quote, (m.quote, m.quote))[1],
                "pair_decimals": 2,
                "lot_decimals": 8,
                "cost_decimals": 5,
                "ordermin": "0.0001",
                "status": "online",
            }
            for m in markets
        }
        return RestReply(200, {"error": [], "result": result})
