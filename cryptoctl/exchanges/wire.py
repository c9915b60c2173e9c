"""What an exchange's WebSocket speaks, as one interface the connection loop drives.

Each exchange module (binance, coinbase, kraken) has one :class:`ExchangeWire`: the URL
and subscribe messages for a set of markets, and ``parse`` turning one received frame
into events. The connection loop (``cryptoctl.exchanges.connection``) knows nothing of
formats; the wire modules know nothing of sockets.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple, Protocol, Self

from cryptoctl.exchanges.trade import Market, Trade


class TradeEvent(NamedTuple):
    market: Market
    trade: Trade


class Control(NamedTuple):
    """A frame that is not a trade but means something to the loop."""

    kind: Literal["subscribed", "heartbeat", "pong", "shutdown", "ignored"]
    detail: str = ""


class Garbage(NamedTuple):
    """A frame that could not be read (not JSON, unknown type, bad fields): counted and
    skipped, never a crash."""

    reason: str


Event = TradeEvent | Control | Garbage


class ExchangeWire(Protocol):
    name: str  # the source name: "binance", "coinbase", "kraken"
    default_ws_url: str
    default_rest_url: str
    default_quote: str
    # No frame at all for this long (trades, heartbeats, pings) means the connection is
    # dead: the loop closes it and reconnects.
    silence_s: float
    # Reconnect on our own before the exchange cuts the connection (Binance: 24 h).
    max_connection_s: float | None

    def exchange_symbol(self, market: Market) -> str:
        """Our market in the exchange's spelling (``BTCUSDT``, ``BTC-USD``, ``BTC/USD``)."""
        ...

    def stream_url(self, base_url: str, markets: Sequence[Market]) -> str:
        """The URL to connect to for these markets (Binance puts the streams in it)."""
        ...

    def subscribe(self, markets: Sequence[Market]) -> list[str]:
        """The text frames to send right after connecting (may be empty)."""
        ...

    def ping(self) -> str | None:
        """An application-level ping to send when idle (Kraken), or None."""
        ...

    def parse(self, frame: str | bytes) -> list[Event]:
        """One received frame -> its events, in the order they appear in it."""
        ...


class MarketWire:
    """What the exchanges' wires share: the markets of one connection, registered by the
    URL and the subscription and found again by the spelling the exchange sends (a symbol
    never registered is Garbage). A subclass gives the attributes of :class:`ExchangeWire`,
    ``exchange_symbol``, ``parse`` and ``ping``; the hooks ``market_key`` (how a received
    symbol is looked up) and ``subscribe_frames`` (what to send after connecting)."""

    def __init__(self, markets: Sequence[Market] = ()) -> None:
        self._markets: dict[str, Market] = {}
        self.register(markets)

    def for_markets(self, markets: Sequence[Market]) -> Self:
        """A wire of its own for one connection's markets."""
        return type(self)(markets)

    def exchange_symbol(self, market: Market) -> str:
        raise NotImplementedError

    def market_key(self, market: Market) -> str:
        return self.exchange_symbol(market)

    def register(self, markets: Sequence[Market]) -> None:
        self._markets.update({self.market_key(m): m for m in markets})

    def stream_url(self, base_url: str, markets: Sequence[Market]) -> str:
        self.register(markets)
        return base_url

    def subscribe(self, markets: Sequence[Market]) -> list[str]:
        self.register(markets)
        return self.subscribe_frames(markets)

    def subscribe_frames(self, markets: Sequence[Market]) -> list[str]:
        return []
