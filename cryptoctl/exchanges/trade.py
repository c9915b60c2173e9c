"""The shapes every exchange module shares: a market, one trade, a gap, a REST history.

A market is (source, symbol, quote) in cryptoctl's spelling (``binance``, ``BTC``,
``USDT``); each exchange module spells it its own way (``BTCUSDT``, ``BTC-USD``,
``BTC/USD``, ``XBTUSD``). A :class:`Trade` is what an exchange reports, already in our
units: the exchange's trade id, its trade time floored to the millisecond, price and
size as floats of the exchange's decimal strings, and the *taker's* side.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal, NamedTuple, Protocol

Side = Literal["buy", "sell"]


class Market(NamedTuple):
    source: str  # "binance" | "coinbase" | "kraken"
    symbol: str  # base asset, upper case: "BTC"
    quote: str  # quote asset, upper case: "USDT"

    def __str__(self) -> str:
        return f"{self.source} {self.symbol}/{self.quote}"


class Trade(NamedTuple):
    trade_id: int  # the exchange's id; consecutive per market (a jump is a gap)
    ts: int  # the exchange's trade time, epoch ms, floored (never rounded)
    price: float
    qty: float
    side: Side  # the taker's side


class Gap(NamedTuple):
    """Trades known to be missing: ids ``first_id..last_id`` inclusive, between the
    trades at ``after_ts`` and ``before_ts`` (epoch ms). ``reason`` says why it stays."""

    market: Market
    first_id: int
    last_id: int
    after_ts: int
    before_ts: int
    reason: str


GAP_KIND = "gap"


def gap_message(gap: Gap) -> dict[str, Any]:
    """A gap as the feed puts it on the tick topic (key = symbol, in the market's
    partition), for the aggregator to store with its next flush."""
    m = gap.market
    return {
        "v": 1, "kind": GAP_KIND, "source": m.source, "symbol": m.symbol, "quote": m.quote,
        "first_id": gap.first_id, "last_id": gap.last_id, "after_ts": gap.after_ts,
        "before_ts": gap.before_ts, "reason": gap.reason,
    }


def parse_gap(obj: Any) -> Gap | None:
    """A gap message back, or None for anything that is not exactly one."""
    if type(obj) is not dict or obj.get("kind") != GAP_KIND or obj.get("v") != 1:
        return None
    texts: list[Any] = [obj.get(k) for k in ("source", "symbol", "quote", "reason")]
    numbers: list[Any] = [obj.get(k) for k in ("first_id", "last_id", "after_ts", "before_ts")]
    if not all(type(t) is str and t for t in texts) or not all(type(n) is int for n in numbers):
        return None
    source, symbol, quote, reason = texts
    first_id, last_id, after_ts, before_ts = numbers
    if first_id > last_id or after_ts > before_ts:
        return None
    return Gap(Market(source, symbol, quote), first_id, last_id, after_ts, before_ts, reason)


class TradeHistory(Protocol):
    """An exchange's REST trade history for one market, oldest first, in pages.

    Both methods yield lists of trades in ascending trade id, each page continuing the
    previous one, until the newest trade the exchange has (or ``until_id``). They raise
    :class:`cryptoctl.errors.CryptoctlError` subclasses for a ban (418) or an exhausted
    retry budget; a 429 is waited out (``Retry-After``) inside.
    """

    def trades_after(
        self, market: Market, after: Trade, *, until_id: int | None = None
    ) -> Iterator[list[Trade]]:
        """Trades with id > ``after.trade_id`` (and <= ``until_id`` when given). The whole
        trade is given because some exchanges page by time (Kraken), others by id."""
        ...

    def trades_since(self, market: Market, ts_ms: int) -> Iterator[list[Trade]]:
        """Trades from the first one with time >= ``ts_ms``."""
        ...
