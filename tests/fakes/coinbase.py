"""Coinbase Exchange as the fake speaks it: subscribe within 5 s, ``subscriptions``,
one ``last_match`` per product, ``match`` (maker side, jumping sequence), heartbeats;
REST trades (newest first, ``after``/``before`` cursors), candles, product."""

from __future__ import annotations

import json
import re
import time
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cryptoctl.exchanges.trade import Market, Trade
from tests.fakes.core import Bar, RestReply, RestRequest, Session, bad_request, int_param
from tests.fakes.trades import dec, iso_us

if TYPE_CHECKING:
    from tests.fakes.core import FakeExchange

_PATH = re.compile(r"^/products/([^/]+)(/trades|/candles)?/?$")
NOT_FOUND = RestReply(404, {"message": "NotFound"})
GRANULARITIES = {60, 300, 900, 3600, 21600, 86400}
MAX_CANDLES = 300


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def sequence_of(trade: Trade) -> int:
    """The product's order-event sequence at this match: increasing, never by one."""
    return 80_000_000 + trade.trade_id * 9 + (trade.trade_id * 31) % 7


def _order_id(trade: Trade, role: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_OID, f"{role}:{trade.trade_id}"))


def _price(value: float) -> str:
    try:
        return dec(value, 2)
    except ValueError:
        return dec(value, 8)


def _maker_side(trade: Trade) -> str:
    return "sell" if trade.side == "buy" else "buy"


def _now_iso() -> str:
    return iso_us(time.time_ns() // 1000)


class CoinbaseDialect:
    kind = "coinbase"

    def __init__(self, fx: FakeExchange) -> None:
        self.fx = fx

    @staticmethod
    def product(market: Market) -> str:
        return f"{market.symbol}-{market.quote}"

    def _by_product(self, product_id: str) -> Market | None:
        return self.fx.market_by(lambda m: self.product(m) == product_id)

    # -- WebSocket --
    def on_open(self, session: Session) -> None:
        session.state.update(subscribed=False, last_hb=time.monotonic(), hb=[], matches=[])

    def match(self, market: Market, trade: Trade, kind: str = "match") -> str:
        return _dumps(
            {
                "type": kind,
                "trade_id": trade.trade_id,
                "maker_order_id": _order_id(trade, "maker"),
                "taker_order_id": _order_id(trade, "taker"),
                "side": _maker_side(trade),  # the maker's side: the taker's is the opposite
                "size": dec(trade.qty, 8),
                "price": _price(trade.price),
                "product_id": self.product(market),
                "sequence": sequence_of(trade),
                "time": iso_us(self.fx.time_us(market, trade)),
            }
        )

    def on_message(self, session: Session, text: str) -> None:
        try:
            msg = json.loads(text)
        except ValueError:
            msg = None
        if not isinstance(msg, dict) or msg.get("type") not in ("subscribe", "unsubscribe"):
            session.put(_dumps({"type": "error", "message": "Failed to subscribe", "reason": "malformed"}))
            return
        products: list[str] = list(msg.get("product_ids") or [])
        wanted: dict[str, list[str]] = {}
        for channel in msg.get("channels") or []:
            if isinstance(channel, str):
                wanted.setdefault(channel, []).extend(products)
            elif isinstance(channel, dict):
                wanted.setdefault(channel.get("name", ""), []).extend(channel.get("product_ids") or products)
        unknown = [p for ps in wanted.values() for p in ps if self._by_product(p) is None]
        if unknown or not wanted:
            reason = f"{unknown[0]} is not a valid product" if unknown else "No channels provided"
            session.put(_dumps({"type": "error", "message": "Failed to subscribe", "reason": reason}))
            return
        hb: list[str] = session.state["hb"]
        matches: list[str] = session.state["matches"]
        new_matches = [p for p in wanted.get("matches", []) if p not in matches]
        with self.fx.lock:
            if msg["type"] == "unsubscribe":
                for name, target in (("heartbeat", hb), ("matches", matches)):
                    for p in wanted.get(name, []):
                        if p in target:
                            target.remove(p)
                session.markets.difference_update(
                    m for p in wanted.get("matches", []) if (m := self._by_product(p)) is not None
                )
                session.put(self._subscriptions(session))
                return
            hb.extend(p for p in wanted.get("heartbeat", []) if p not in hb)
            matches.extend(new_matches)
            session.state["subscribed"] = True
            before = [self._subscriptions(session)]
            markets = [m for m in map(self._by_product, new_matches) if m is not None]
            for market in markets:
                published = self.fx.published[market]
                if published:
                    before.append(self.match(market, published[-1], "last_match"))
            session.subscribe(markets, before=before)

    def _subscriptions(self, session: Session) -> str:
        channels = [
            {"name": name, "product_ids": list(session.state[key]), "account_ids": None}
            for name, key in (("matches", "matches"), ("heartbeat", "hb"))
            if session.state[key]
        ]
        return _dumps({"type": "subscriptions", "channels": channels})

    def trade_frames(self, session: Session, market: Market, trade: Trade) -> list[str]:
        return [self.match(market, trade)]

    def idle(self, session: Session, now: float) -> None:
        state = session.state
        if not state["subscribed"]:
            if now - session.opened_at > self.fx.subscribe_timeout_s:
                state["subscribed"] = True  # once
                session.send_now(
                    _dumps({"type": "error", "message": "Failed to subscribe", "reason": "subscribe timeout"})
                )
                session.close(1000, "no subscribe within 5 s")
            return
        if state["hb"] and now - state["last_hb"] >= self.fx.heartbeat_s:
            state["last_hb"] = now
            for product in state["hb"]:
                market = self._by_product(product)
                assert market is not None
                with self.fx.lock:
                    published = self.fx.published[market]
                    last = published[-1] if published else None
                session.send_now(
                    _dumps(
                        {
                            "type": "heartbeat",
                            "last_trade_id": last.trade_id if last else 0,
                            "product_id": product,
                            "sequence": sequence_of(last) + 1 if last else 1,
                            "time": _now_iso(),
                        }
                    )
                )

    def shutdown_frames(self) -> list[str]:
        return []

    def garbage_frames(self) -> list[str | bytes]:
        return ["<html>502 Bad Gateway</html>", _dumps({"type": "mystery", "product_id": "BTC-USD"})]

    # -- REST --
    def route(self, path: str) -> str:
        found = _PATH.match(path)
        if found is None:
            return path
        return "/products/{id}" + (found.group(2) or "")

    def limited(self, status: int, retry_after_s: int) -> RestReply:
        if status == 418:  # Coinbase bans come from its edge as 403
            return RestReply(403, {"message": "Forbidden"}, {"Retry-After": str(retry_after_s)})
        return RestReply(429, {"message": "Public rate limit exceeded"}, {"Retry-After": str(retry_after_s)})

    def reply_headers(self, route: str) -> dict[str, str]:
        return {}

    def rest(self, request: RestRequest) -> RestReply:
        found = _PATH.match(request.path)
        if found is None:
            return NOT_FOUND
        market = self._by_product(found.group(1))
        if market is None:
            return NOT_FOUND
        if found.group(2) == "/trades":
            return self._trades(market, request.params)
        if found.group(2) == "/candles":
            return self._candles(market, request.params)
        return RestReply(200, self._product(market))

    def _trade_row(self, market: Market, trade: Trade) -> dict[str, Any]:
        return {
            "time": iso_us(self.fx.time_us(market, trade)),
            "trade_id": trade.trade_id,
            "price": _price(trade.price),
            "size": dec(trade.qty, 8),
            "side": _maker_side(trade),
        }

    def _trades(self, market: Market, params: dict[str, str]) -> RestReply:
        invalid = RestReply(400, {"message": "Invalid limit"})
        limit = int_param(params, "limit", invalid, 1000)
        assert limit is not None
        if not 1 <= limit <= 1000:
            raise bad_request(invalid)
        cursor_error = RestReply(400, {"message": "Invalid cursor"})
        after = int_param(params, "after", cursor_error)
        before = int_param(params, "before", cursor_error)
        trades = self.fx.rest_trades(market)
        if after is not None:  # older than the cursor: the newest `limit` of those
            page = [t for t in trades if t.trade_id < after][-limit:]
        elif before is not None:  # newer than the cursor: the page just above it
            page = [t for t in trades if t.trade_id > before][:limit]
        else:
            page = trades[-limit:]
        page.reverse()
        headers = {}
        if page:
            headers = {"CB-BEFORE": str(page[0].trade_id), "CB-AFTER": str(page[-1].trade_id)}
        return RestReply(200, [self._trade_row(market, t) for t in page], headers)

    @staticmethod
    def _time_param(value: str) -> int:
        if re.fullmatch(r"\d+(\.\d+)?", value):
            return int(float(value))
        try:
            return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())
        except ValueError:
            raise bad_request(RestReply(400, {"message": "Invalid start or end time"})) from None

    def _candles(self, market: Market, params: dict[str, str]) -> RestReply:
        granularity = int_param(
            params, "granularity", RestReply(400, {"message": "Unsupported granularity"}), 60
        )
        if granularity not in GRANULARITIES:
            raise bad_request(RestReply(400, {"message": "Unsupported granularity"}))
        if granularity != 60:
            raise bad_request(RestReply(400, {"message": "the fake serves granularity=60 only"}))
        bars = [b for b in self.fx.bars(market) if b.trade_count]  # no row for an empty minute
        if "start" in params and "end" in params:
            start, end = self._time_param(params["start"]), self._time_param(params["end"])
            if (end - start) // granularity > MAX_CANDLES:
                raise bad_request(
                    RestReply(
                        400,
                        {
                            "message": "granularity too small for the requested time range. "
                            "Count of aggregations requested exceeds 300"
                        },
                    )
                )
            bars = [b for b in bars if start * 1000 <= b.start_ms <= end * 1000]
        else:
            newest = self.fx.now_ms // 60_000 * 60_000
            bars = [b for b in bars if b.start_ms > newest - MAX_CANDLES * 60_000]
        return RestReply(200, [self._candle(b) for b in reversed(bars)])

    @staticmethod
    def _candle(bar: Bar) -> list[Any]:
        return [bar.start_ms // 1000, bar.low, bar.high, bar.open, bar.close, float(bar.volume)]

    def _product(self, market: Market) -> dict[str, Any]:
        return {
            "id": self.product(market),
            "base_currency": market.symbol,
            "quote_currency": market.quote,
            "quote_increment": "0.01",
            "base_increment": "0.00000001",
            "display_name": f"{market.symbol}-{market.quote}",
            "min_market_funds": "1",
            "margin_enabled": False,
            "post_only": False,
            "limit_only": False,
            "cancel_only": False,
            "status": "online",
            "status_message": "",
            "trading_disabled": False,
            "fx_stablecoin": False,
            "auction_mode": False,
        }
