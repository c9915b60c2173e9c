"""Gap-free trade feeds: per-market trade-id continuity between a live stream and REST.

Trade ids are consecutive per market on every exchange we read, so the live stream is
checked against the last trade produced: an id at or below it is a duplicate (dropped,
counted); the next id is produced; a jump is filled from the REST history before the
trade that revealed it. What the history cannot give (an error past its retry budget, a
hole in the exchange's history) becomes a :class:`Gap`, recorded and never hidden; the
feed then goes on with the live trade.

A market starts in one of three ways:

- fresh (no ``last``, no ``since_ms``): with the first live trade;
- resume (``last``: the last trade already on the topic): with the trade after it; the
  first live trade bridges the ones missed over REST, like any jump;
- ``since_ms``: with the first trade at or after that time, over REST. :meth:`start`
  streams that history (call it before connecting, so a long history does not stall the
  socket); the first live trade then bridges the rest. Without :meth:`start`, the first
  live trade fetches the history itself.

Everything is pure: no sockets, no threads, no clock. Methods return lazy iterators; a
trade counts as produced (``last`` advanced, counters moved) when it is yielded, so a
caller that stops half-way leaves a consistent state and the next live trade bridges
from what was really produced. Iterate each result to its end before the next call.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Iterator
from functools import partial
from typing import NamedTuple

from cryptoctl.errors import CryptoctlError
from cryptoctl.exchanges.trade import Gap, Market, Trade, TradeHistory

# Gap.first_id when the first missing id cannot be known: with --since, the history failed
# before giving any trade, so the ids between the since time and the first live trade are
# unknown (the gap's after_ts is then the since time).
UNKNOWN_ID = -1

NOT_IN_HISTORY = "not in the exchange's REST history"

# What a history may raise that becomes a gap; anything else (a bug, or a class given as
# ``fatal``, such as a ban) propagates.
RECOVERABLE: tuple[type[Exception], ...] = (CryptoctlError, OSError)


class ContinuityStats(NamedTuple):
    """A snapshot of one market's counters, replaced as a whole on every change, so
    another thread reading ``MarketContinuity.stats`` always sees a consistent set."""

    produced: int = 0  # trades handed out, all sources
    live: int = 0  # ... of which from the live stream
    history_trades: int = 0  # ... of which from start() (--since history)
    filled_trades: int = 0  # ... of which fetched over REST to bridge a jump
    fills: int = 0  # bridges that fetched at least one trade
    duplicates: int = 0  # live trades dropped: id at or below the last produced
    before_since: int = 0  # live trades dropped: older than --since, before the start
    rest_errors: int = 0  # history calls that failed (recoverably)
    reconnects: int = 0
    gaps: tuple[Gap, ...] = ()  # unfillable, in id order; they stay open for good
    last: tuple[int, int] | None = None  # (trade_id, ts) of the last trade produced


def order_key(trade: Trade) -> tuple[int, int]:
    """Trade order for candles: by time, ties on one millisecond by the exchange's id."""
    return trade.ts, trade.trade_id


class MarketContinuity:
    """Trade-id continuity of one market. ``fatal``: exception classes from the history
    that must stop the feed (a ban) instead of becoming a gap."""

    def __init__(
        self,
        market: Market,
        history: TradeHistory,
        *,
        last: Trade | None = None,
        since_ms: int | None = None,
        fatal: tuple[type[BaseException], ...] = (),
    ) -> None:
        if last is not None and since_ms is not None:
            raise ValueError("give either a resume point (last) or a start time (since_ms)")
        self.market = market
        self._history = history
        self._last = last
        self._since_ms = since_ms
        self._fatal = fatal
        self.stats = ContinuityStats(last=_point(last))

    @property
    def last(self) -> Trade | None:
        """The last trade produced (or the resume point)."""
        return self._last

    def start(self) -> Iterator[Trade]:
        """With ``since_ms``: the REST history from the first trade at or after it, up to
        the newest the exchange has. Otherwise nothing. A failure ends it quietly (counted):
        the first live trade retries from where it stopped, and records the gap if needed."""
        since = self._since_ms
        if since is None or self._last is not None:
            return
        yield from self._fill(partial(self._history.trades_since, self.market, since), None, "history")

    def on_reconnect(self) -> None:
        """The stream restarted. Ids carry continuity, so the next trade is checked against
        the last one produced, however long the pause; only the count changes."""
        self.stats = self.stats._replace(reconnects=self.stats.reconnects + 1)

    def on_trade(self, trade: Trade) -> Iterator[Trade]:
        """What to produce for one live trade, in id order: nothing for a duplicate, the
        missing trades then this one after a jump, else this one."""
        last = self._last
        if last is None:
            if self._since_ms is None:
                yield self._produce(trade, "live")
            elif trade.ts < self._since_ms:
                self.stats = self.stats._replace(before_since=self.stats.before_since + 1)
            else:
                yield from self._bridge(trade)
        elif trade.trade_id <= last.trade_id:
            self.stats = self.stats._replace(duplicates=self.stats.duplicates + 1)
        elif trade.trade_id == last.trade_id + 1:
            yield self._produce(trade, "live")
        else:
            yield from self._bridge(trade)

    def _bridge(self, live: Trade) -> Iterator[Trade]:
        """The trades missing before ``live`` from REST, the gap left if any, then ``live``."""
        want = live.trade_id - 1
        anchor = self._last
        pages: Callable[[], Iterable[list[Trade]]]
        if anchor is None:  # --since, and no trade of it produced yet
            since = self._since_ms
            assert since is not None
            pages = partial(self._history.trades_since, self.market, since)
        else:
            pages = partial(self._history.trades_after, self.market, anchor, until_id=want)
        before = self.stats.filled_trades
        error = yield from self._fill(pages, want, "filled")
        if self.stats.filled_trades > before:
            self.stats = self.stats._replace(fills=self.stats.fills + 1)
        last = self._last
        if last is None:
            if error is not None and self._since_ms is not None:
                self._gap(UNKNOWN_ID, want, self._since_ms, live.ts, error)
        elif last.trade_id < want:
            self._gap(last.trade_id + 1, want, last.ts, live.ts, error or NOT_IN_HISTORY)
        yield self._produce(live, "live")

    def _fill(
        self, pages: Callable[[], Iterable[list[Trade]]], until_id: int | None, source: str
    ) -> Generator[Trade, None, str | None]:
        """Produce the history's trades after the last one (up to ``until_id``), dropping
        page overlaps, ids beyond, and (before a start) trades older than --since; a hole
        in the ids becomes a gap. Returns the reason if the history failed, else None."""
        iterator: Iterator[list[Trade]] | None = None
        try:
            iterator = iter(pages())
            for page in iterator:
                for trade in page:
                    last = self._last
                    if last is None:
                        if self._since_ms is not None and trade.ts < self._since_ms:
                            continue
                    elif trade.trade_id <= last.trade_id:
                        continue
                    if until_id is not None and trade.trade_id > until_id:
                        return None
                    if last is not None and trade.trade_id > last.trade_id + 1:
                        self._gap(last.trade_id + 1, trade.trade_id - 1, last.ts, trade.ts, NOT_IN_HISTORY)
                    yield self._produce(trade, source)
                    if trade.trade_id == until_id:
                        return None
        except self._fatal:
            raise
        except RECOVERABLE as exc:
            self.stats = self.stats._replace(rest_errors=self.stats.rest_errors + 1)
            return f"REST history failed: {exc}"
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()
        return None

    def _produce(self, trade: Trade, source: str) -> Trade:
        self._last = trade
        s = self.stats
        point = (trade.trade_id, trade.ts)
        if source == "live":
            self.stats = s._replace(produced=s.produced + 1, live=s.live + 1, last=point)
        elif source == "history":
            self.stats = s._replace(produced=s.produced + 1, history_trades=s.history_trades + 1, last=point)
        else:
            self.stats = s._replace(produced=s.produced + 1, filled_trades=s.filled_trades + 1, last=point)
        return trade

    def _gap(self, first_id: int, last_id: int, after_ts: int, before_ts: int, reason: str) -> None:
        gap = Gap(self.market, first_id, last_id, after_ts, before_ts, reason)
        self.stats = self.stats._replace(gaps=(*self.stats.gaps, gap))


def _point(trade: Trade | None) -> tuple[int, int] | None:
    return None if trade is None else (trade.trade_id, trade.ts)
