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
_GAP_KEYS = frozenset(
    ("v", "kind", "source", "symbol", "quote", "first_id", "last_id", "after_ts", "before_ts", "reason")
)


def gap_message(gap: Gap) -> dict[str, Any]:
    """The gap marker a feed puts on the ticks' topic (key = symbol): the value's JSON
    object. ``first_id`` is -1 when the first missing id is unknown (continuity.UNKNOWN_ID)."""
    market = gap.market
    return {
        "v": 1,
        "kind": GAP_KIND,
        "source": market.source,
        "symbol": market.symbol,
        "quote": market.quote,
        "first_id": gap.first_id,
        "last_id": gap.last_id,
        "after_ts": gap.after_ts,
        "before_ts": gap.before_ts,
        "reason": gap.reason,
    }


def parse_gap(obj: Any) -> Gap | None:
    """A decoded message value -> the Gap it announces, or None when it is not exactly a
    gap marker (:func:`gap_message`'s keys, nothing more, each of its type)."""
    if type(obj) is not dict or obj.keys() != _GAP_KEYS:
        return None
    if type(obj["v"]) is not int or obj["v"] != 1 or obj["kind"] != GAP_KIND:
        return None
    texts = [obj[k] for k in ("source", "symbol", "quote")]
    if not all(type(t) is str and t for t in texts) or type(obj["reason"]) is not str:
        return None
    numbers = [obj[k] for k in ("first_id", "last_id", "after_ts", "before_ts")]
    if not all(type(n) is int for n in numbers):  # bool is not int here
        return None
    first_id, last_id, after_ts, before_ts = numbers
    if not (first_id == -1 or 0 <= first_id <= last_id) or last_id < 0 or after_ts > before_ts:
        return None
    source, symbol, quote = texts
    return Gap(Market(source, symbol, quote), first_id, last_id, after_ts, before_ts, obj["reason"])


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
