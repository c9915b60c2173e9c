"""An exchange's public trade feed as a source: Binance, Coinbase or Kraken, several
markets on one connection, gap-free (docs/exchanges.md, docs/producer.md).

Start: each market is checked with the exchange (an unknown one is a usage error naming
the exchange's spelling). Without ``--since``, a market resumes after its newest trade
already on the topic (:func:`cryptoctl.kafka.tail.last_trades`), or starts with the
first live trade; with ``--since``, its REST history from that time comes first. Then
the live stream: every trade goes through its market's
:class:`~cryptoctl.exchanges.continuity.MarketContinuity`, which drops re-sent trades
and fills jumps in the ids over REST. A gap it cannot fill becomes a gap marker
(:func:`~cryptoctl.exchanges.trade.gap_message`), taken by the produce loop after the
batch that holds the trade after it.

Threads: a reader thread drives the WebSocket (:class:`WireConnection`) and queues the
lists of events it yields (what one socket wakeup brought: one handoff per list, not
per trade); the producer's thread turns them into ticks and batches. A batch holds what was
ready, and no trade waits in one for longer than :data:`MAX_HOLD_S`. A ban (HTTP 418)
stops the feed with its error; any other REST failure becomes a recorded gap.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from cryptoctl.errors import ExchangeBanned, InvalidTick, UsageError
from cryptoctl.exchanges.continuity import MarketContinuity
from cryptoctl.exchanges.trade import Gap, Market, Trade, gap_message
from cryptoctl.sources.base import (
    FeedStats,
    Marker,
    MarketStats,
    SourceCounters,
    StopFlag,
    note_problem,
    now_ms,
    plain_fields_ok,
)
from cryptoctl.tick import Tick, TickRow, ValidTick, checked_tick, is_code
from cryptoctl.times import format_duration_ms, iso_utc

if TYPE_CHECKING:
    from cryptoctl.exchanges.connection import WireConnection
    from cryptoctl.exchanges.wire import ExchangeWire
    from cryptoctl.settings import Settings

log = logging.getLogger(__name__)

EXCHANGES = ("binance", "coinbase", "kraken")
_HISTORY_CLASS = {"binance": "BinanceHistory", "coinbase": "CoinbaseHistory", "kraken": "KrakenHistory"}
DEFAULT_QUOTE = {"binance": "USDT", "coinbase": "USD", "kraken": "USD"}

MAX_HOLD_S = 0.05  # the longest a trade waits in a batch that is being gathered
MAX_BATCH = 5_000
_IDLE_S = 0.05  # with nothing to do, an empty batch this often (the loop serves Kafka)
_MAX_QUEUED = 200_000  # events read ahead of the producer: beyond, the reader waits
_RATE_SAMPLE_S = 0.5

MarketKey = tuple[str, str, str]
ResumeLookup = Callable[[Sequence[MarketKey]], dict[MarketKey, tuple[int, int]]]

# A Tick for a trade whose numbers passed plain_fields_ok (symbol, quote and source are
# checked once, up front): tuple.__new__ with the fields in Tick's order, a third of the
# NamedTuple constructor's cost.
_new_tick = cast(Callable[[type[Tick], TickRow], ValidTick], tuple.__new__)


@dataclass(frozen=True)
class ExchangeConfig:
    exchange: str  # "binance" | "coinbase" | "kraken"
    symbols: tuple[str, ...]
    quote: str | None = None  # None: the exchange's default (DEFAULT_QUOTE)
    since_ms: int | None = None  # start every market at this time, over REST
    ws_url: str | None = None  # None: the exchange's own
    rest_url: str | None = None

    def markets(self) -> list[Market]:
        quote = (self.quote or DEFAULT_QUOTE[self.exchange]).upper()
        if not quote.isascii() or not is_code(quote):
            raise UsageError(f"invalid quote asset {self.quote!r}", hint="e.g. --quote USDT")
        return [Market(self.exchange, symbol, quote) for symbol in self.symbols]


def exchange_module(name: str) -> Any:
    """The exchange's module (``cryptoctl.exchanges.binance``, ...), imported on demand."""
    if name not in EXCHANGES:
        raise UsageError(f"unknown exchange {name!r}", hint=f"use one of {', '.join(EXCHANGES)}")
    return importlib.import_module(f"cryptoctl.exchanges.{name}")


def open_exchange_source(settings: Settings, config: ExchangeConfig) -> ExchangeSource:
    """The source, with every market checked with the exchange (UnknownMarket: exit 2)."""
    module = exchange_module(config.exchange)
    markets = config.markets()
    history = getattr(module, _HISTORY_CLASS[config.exchange])(config.rest_url or module.DEFAULT_REST_URL)
    try:
        for market in markets:
            history.check_market(market)
    except BaseException:
        history.close()
        raise

    def resume(keys: Sequence[MarketKey]) -> dict[MarketKey, tuple[int, int]]:
        from cryptoctl.kafka.tail import last_trades

        return last_trades(settings, keys)

    return ExchangeSource(config, module.WIRE.for_markets(markets), history, markets, resume=resume)


class ExchangeSource:
    """One exchange, several markets: a Source with gap markers and per-market stats."""

    def __init__(
        self,
        config: ExchangeConfig,
        wire: ExchangeWire,
        history: Any,  # a TradeHistory, with close()
        markets: Sequence[Market],
        *,
        resume: ResumeLookup | None = None,
        connection: Callable[[ExchangeWire, Sequence[Market], str | None], WireConnection] | None = None,
    ) -> None:
        self.name = config.exchange
        self.counters = SourceCounters()
        rest = getattr(history, "rest", None)  # its REST client times every request it sends
        if rest is not None:
            self.counters.requests = rest.latency
        self.config = config
        self.markets = list(markets)
        self._wire = wire
        self._history = history
        self._pages = _PageCount(history)
        self._resume = resume
        self._connection = connection or _wire_connection
        self._conn: WireConnection | None = None
        self._continuity: dict[Market, MarketContinuity] = {}
        self._gaps_sent: dict[Market, int] = {}
        self._markers: list[Marker] = []
        self._queue: deque[list[Any]] = deque()  # lists of StreamEvents
        self._pushed = 0  # events queued (the reader writes it)
        self._popped = 0  # events taken (the producer's thread writes it)
        self._ready = threading.Event()
        self._waiting = False
        self._halt = threading.Event()
        self._reader_error: BaseException | None = None
        self._samples: deque[tuple[float, tuple[int, ...]]] = deque(maxlen=8)
        self._next_sample = 0.0
        self._resumed: dict[Market, tuple[int, int]] = {}

    # --- the Source protocol ---

    def batches(self, stop: StopFlag) -> Iterator[list[ValidTick]]:
        try:
            self._start_markets()
            yield from self._history_phase(stop)
            if not stop.is_set():
                yield from self._live_phase(stop)
        finally:
            self._halt.set()
            self._history.close()

    def take_markers(self) -> list[Marker]:
        markers, self._markers = self._markers, []
        return markers

    def feed_stats(self) -> FeedStats:
        """From any thread: every value read is a whole snapshot or a plain int."""
        conn = self._conn
        counters = conn.counters if conn is not None else None
        samples = list(self._samples)
        rates: tuple[float, ...] = ()
        if len(samples) >= 2 and samples[-1][0] > samples[0][0]:
            (t0, n0), (t1, n1) = samples[0], samples[-1]
            rates = tuple((b - a) / (t1 - t0) for a, b in zip(n0, n1, strict=True))
        markets = []
        continuity = self._continuity
        pages, fetching = self._pages.pages, dict(self._pages.fetching)
        for i, market in enumerate(self.markets):
            cont = continuity.get(market)
            if cont is None:
                markets.append(MarketStats(str(market), 0, 0.0, None, None, 0, 0, 0, 0, 0, 0))
                continue
            s = cont.stats
            catching_up = market in fetching
            until = fetching.get(market)
            behind = max(0, until - s.last[0]) if until is not None and s.last else None
            markets.append(
                MarketStats(
                    market=str(market),
                    trades=s.produced,
                    trades_per_s=rates[i] if rates else 0.0,
                    last_trade_id=s.last[0] if s.last else None,
                    last_trade_ts=s.last[1] if s.last else None,
                    reconnects=s.reconnects,
                    gaps_filled=s.fills,
                    filled_trades=s.filled_trades,
                    history_trades=s.history_trades,
                    duplicates=s.duplicates,
                    gaps_open=len(s.gaps),
                    open_gaps=tuple(gap_message(g) for g in s.gaps),
                    rest_pages=pages.get(market, 0),
                    catching_up=catching_up,
                    behind=behind,
                )
            )
        return FeedStats(
            connected=bool(counters and counters.connected),
            connects=counters.connects if counters else 0,
            reconnects=counters.reconnects if counters else 0,
            unreadable=counters.garbage if counters else 0,
            markets=tuple(markets),
        )

    @property
    def resumed(self) -> dict[Market, tuple[int, int]]:
        """(trade id, time) each market resumed after, as found on the topic."""
        return dict(self._resumed)

    # --- start ---

    def _start_markets(self) -> None:
        since = self.config.since_ms
        points: dict[MarketKey, tuple[int, int]] = {}
        if since is None and self._resume is not None:
            points = self._resume([(m.source, m.symbol, m.quote) for m in self.markets])
        continuity = {}
        for market in self.markets:
            point = points.get((market.source, market.symbol, market.quote))
            last = None
            if point is not None:  # only the id and the time of a resume point matter
                last = Trade(point[0], point[1], 0.0, 0.0, "buy")
                self._resumed[market] = point
                log.info(
                    "%s: resuming after trade %d of %s (%s ago), catching up over REST",
                    market, point[0], iso_utc(point[1]), format_duration_ms(max(0, now_ms() - point[1])),
                )  # fmt: skip
            continuity[market] = MarketContinuity(
                market, self._pages, last=last, since_ms=since if last is None else None,
                fatal=(ExchangeBanned,),
            )  # fmt: skip
            self._gaps_sent[market] = 0
        self._continuity = continuity

    def _history_phase(self, stop: StopFlag) -> Iterator[list[ValidTick]]:
        """With --since: each market's REST history, before connecting (a long history
        must not stall the socket)."""
        if self.config.since_ms is None:
            return
        for market, cont in self._continuity.items():
            batch: list[ValidTick] = []
            for trade in cont.start():
                tick = self._tick(market, trade, now_ms())
                if tick is not None:
                    batch.append(tick)
                if len(batch) >= MAX_BATCH:
                    self._note_gaps(market, cont)
                    yield batch
                    batch = []
                    self._sample()
                    if stop.is_set():
                        return
            self._note_gaps(market, cont)
            yield batch
            self._sample()

    # --- live ---

    def _live_phase(self, stop: StopFlag) -> Iterator[list[ValidTick]]:
        conn = self._connection(self._wire, self.markets, self.config.ws_url)
        self._conn = conn
        reader = threading.Thread(target=self._read, args=(conn,), name=f"{self.name}-feed", daemon=True)
        reader.start()
        try:
            yield from self._drain(stop)
        finally:
            self._halt.set()
            reader.join(timeout=5.0)

    def _read(self, conn: WireConnection) -> None:
        """The reader thread: the connection's event lists onto the queue, in order."""
        queue, halt = self._queue, self._halt
        try:
            for events in conn.batches(halt):
                queue.append(events)
                self._pushed += len(events)
                if self._waiting:
                    self._ready.set()
                while self._pushed - self._popped > _MAX_QUEUED and not halt.is_set():
                    halt.wait(0.005)  # the producer is behind: hold the socket, not memory
        except BaseException as exc:  # handed to the producer's thread
            self._reader_error = exc
        finally:
            self._ready.set()

    def _drain(self, stop: StopFlag) -> Iterator[list[ValidTick]]:
        from cryptoctl.exchanges.connection import Connected, Disconnected
        from cryptoctl.exchanges.wire import TradeEvent

        queue, continuity = self._queue, self._continuity
        tick_for = self._tick
        connected_before = False
        batch: list[ValidTick] = []
        started = 0.0  # when the batch's first trade arrived
        # stop is checked between batches (at most MAX_HOLD_S apart while busy), not per event
        stopping = stop.is_set()
        while not stopping:
            try:
                events = queue.popleft()
            except IndexError:
                if batch:
                    yield batch
                    batch = []
                    self._sample()
                    stopping = stop.is_set()
                    continue
                if self._reader_error is not None:
                    raise self._reader_error from None
                if not self._wait_for_events():
                    yield []  # nothing for a while: the loop serves delivery reports
                    self._sample()
                stopping = stop.is_set()
                continue
            self._popped += len(events)
            recv = now_ms()  # the list came in one socket wakeup
            for event in events:
                if type(event) is TradeEvent:
                    market = event.market
                    cont = continuity[market]
                    gaps = len(cont.stats.gaps)
                    for trade in cont.on_trade(event.trade):
                        tick = tick_for(market, trade, recv)
                        if tick is None:
                            continue
                        if not batch:
                            started = time.monotonic()
                        batch.append(tick)
                        if len(batch) >= MAX_BATCH or (
                            len(batch) % 64 == 0 and time.monotonic() - started >= MAX_HOLD_S
                        ):
                            self._note_gaps(market, cont)
                            yield batch
                            batch = []
                            self._sample()
                            stopping = stop.is_set()
                            if stopping:  # the rest of this trade's fill waits for the next run
                                break
                    if len(cont.stats.gaps) != gaps:
                        self._note_gaps(market, cont)
                    if stopping:  # the rest of the list is not produced: continuity agrees
                        break
                elif type(event) is Connected:
                    if connected_before:
                        for cont in continuity.values():
                            cont.on_reconnect()
                    connected_before = True
                elif type(event) is Disconnected:
                    log.info("%s: disconnected (%s)", self.name, event.reason)
            if batch and time.monotonic() - started >= MAX_HOLD_S:
                yield batch
                batch = []
                self._sample()
                stopping = stop.is_set()
        if batch:
            yield batch

    def _wait_for_events(self) -> bool:
        """Wait a little for the reader; False when nothing came."""
        self._waiting = True
        self._ready.clear()
        try:
            if self._queue or self._reader_error is not None:
                return True
            return self._ready.wait(_IDLE_S)
        finally:
            self._waiting = False

    # --- ticks, gaps, rates ---

    def _tick(self, market: Market, trade: Trade, recv_ts: int) -> ValidTick | None:
        if plain_fields_ok(trade.price, trade.qty, trade.ts, recv_ts):
            return _new_tick(Tick, (
                market.symbol, trade.price, trade.ts, self.name, recv_ts, market.quote, trade.qty,
                None, trade.trade_id, trade.side,
            ))  # fmt: skip
        tick = Tick(
            market.symbol, trade.price, trade.ts, self.name, recv_ts, market.quote, trade.qty,
            trade_id=trade.trade_id, side=trade.side,
        )  # fmt: skip
        try:
            return checked_tick(tick.to_dict())
        except InvalidTick as exc:
            self.counters.invalid += 1
            note_problem(self.counters, f"{market}: trade {trade.trade_id} rejected: {exc.reason}")
            return None

    def _note_gaps(self, market: Market, cont: MarketContinuity) -> None:
        gaps = cont.stats.gaps
        sent = self._gaps_sent[market]
        for gap in gaps[sent:]:
            self._markers.append(Marker(market.symbol, gap_message(gap), gap.before_ts))
            note_problem(self.counters, _gap_text(gap))
        self._gaps_sent[market] = len(gaps)

    def _sample(self) -> None:
        now = time.monotonic()
        if now >= self._next_sample:
            continuity = self._continuity
            self._samples.append((now, tuple(continuity[m].stats.produced for m in self.markets)))
            self._next_sample = now + _RATE_SAMPLE_S


class _PageCount:
    """The REST history as the markets' continuity sees it, counting for the status line:
    the pages fetched per market and, while a fetch runs, the trade id it fetches up to
    (None: up to the newest, a --since history). A resume after an old last trade is such a
    fetch: its catch-up progress."""

    def __init__(self, history: Any) -> None:
        self._history = history
        self.pages: dict[Market, int] = {}
        self.fetching: dict[Market, int | None] = {}  # written by the producer's thread

    def trades_after(
        self, market: Market, after: Trade, *, until_id: int | None = None
    ) -> Iterator[list[Trade]]:
        return self._counted(market, self._history.trades_after(market, after, until_id=until_id), until_id)

    def trades_since(self, market: Market, ts_ms: int) -> Iterator[list[Trade]]:
        return self._counted(market, self._history.trades_since(market, ts_ms), None)

    def _counted(
        self, market: Market, pages: Iterator[list[Trade]], until_id: int | None
    ) -> Iterator[list[Trade]]:
        self.fetching[market] = until_id
        try:
            for page in pages:
                self.pages[market] = self.pages.get(market, 0) + 1
                yield page
        finally:
            self.fetching.pop(market, None)
            close = getattr(pages, "close", None)
            if close is not None:
                close()


def _gap_text(gap: Gap) -> str:
    first = "?" if gap.first_id < 0 else str(gap.first_id)
    return f"{gap.market}: trades {first}..{gap.last_id} missing ({gap.reason})"


def _wire_connection(wire: ExchangeWire, markets: Sequence[Market], url: str | None) -> WireConnection:
    from cryptoctl.exchanges.connection import WireConnection

    return WireConnection(wire, markets, url=url)


def exchange_defaults() -> Iterable[tuple[str, str, str]]:
    """(exchange, default WebSocket URL, default REST URL), from the wire modules."""
    for name in EXCHANGES:
        module = exchange_module(name)
        yield name, module.DEFAULT_WS_URL, module.DEFAULT_REST_URL
