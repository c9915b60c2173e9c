"""The WebSocket connection loop: connect, subscribe, read, and reconnect, for any
:class:`~cryptoctl.exchanges.wire.ExchangeWire`.

It yields the trades the wire parses, plus :class:`Connected` and :class:`Disconnected`
around each connection, so the feed layer can tell the continuity engine "a reconnect
happened" before the next trade. Exchange formats stay in the wire modules; sockets
stay here.

A connection is declared dead when no frame at all arrived for ``wire.silence_s``
(data, or a server ping: both prove the exchange is still talking to us; our own
keepalive's pongs do not count), frames already waiting in the socket included: a
caller that held a batch longer than that is not the exchange falling silent. It is
replaced before ``wire.max_connection_s``, and after a ``Control("shutdown")``. Failed
or short-lived connections are retried with exponential backoff and full jitter; a
connection that stayed up for ``Backoff.healthy_s`` resets the backoff.

The socket is websockets' asyncio client, on an event loop of the calling thread's own
that runs while the loop waits for frames. Each wakeup takes every message already
received, and :meth:`WireConnection.batches` hands them over as one list: one handoff
per socket read instead of one ``recv`` (a coroutine, a lock, a queue) per message.
While the caller holds a batch, nothing reads the socket: TCP holds the exchange back.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException
from websockets.frames import Frame, Opcode
from websockets.protocol import State

from cryptoctl.exchanges.trade import Market
from cryptoctl.exchanges.wire import Control, ExchangeWire, Garbage, TradeEvent
from cryptoctl.sources.base import StopFlag

log = logging.getLogger(__name__)


class Connected(NamedTuple):
    at_ms: int  # wall clock when the subscription frames were sent
    attempt: int  # 1 for a first try; more after failed tries since the last healthy spell
    url: str


class Disconnected(NamedTuple):
    at_ms: int
    reason: str  # "silent for 10.0 s", "server shutdown", "max age", "closed: …", "stopped"


StreamEvent = TradeEvent | Connected | Disconnected


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter: the n-th consecutive failure waits a uniform
    random time in ``[0, min(max_s, initial_s * factor**(n-1))]``."""

    initial_s: float = 0.5
    max_s: float = 30.0
    factor: float = 2.0
    healthy_s: float = 60.0  # a connection up this long resets the failure count

    def cap(self, failures: int) -> float:
        return min(self.max_s, self.initial_s * self.factor ** max(0, failures - 1))

    def delay(self, failures: int, rng: random.Random) -> float:
        return rng.uniform(0.0, self.cap(failures)) if failures > 0 else 0.0


@dataclass
class ConnectionCounters:
    """Written by the loop (one thread), read by anyone: plain values, no lock needed."""

    connects: int = 0  # connections opened
    reconnects: int = 0  # connections opened after the first
    failed_connects: int = 0  # attempts that never opened
    frames: int = 0
    trades: int = 0
    garbage: int = 0  # frames the wire could not read
    dead: int = 0  # connections declared dead for silence
    connected: bool = False
    last_problem: str = ""


class _FeedConnection(ClientConnection):
    """A client connection that keeps the messages received in a list the loop takes
    whole, and notes when the server last sent anything (a data frame or a ping), which
    ``recv`` alone cannot tell.

    Data frames bypass websockets' one-message-at-a-time queue; everything else (the
    handshake's response, pongs to our keepalive) goes to it as usual, and pings and
    closes are answered by the protocol underneath. The size limit is the protocol's."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.last_frame_at = 0.0
        self.inbox: list[str | bytes] = []
        self.waiter: asyncio.Future[None] | None = None  # set while the loop waits
        self._fragments: list[bytes] = []
        self._text = False  # the fragmented message is text

    def process_event(self, event: Any) -> None:
        if type(event) is not Frame:  # the handshake's response
            super().process_event(event)
            return
        opcode = event.opcode
        if opcode is Opcode.PONG:
            super().process_event(event)
            return
        self.last_frame_at = time.monotonic()
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY or opcode is Opcode.CONT:
            self._message(event)

    def _message(self, frame: Frame) -> None:
        data: bytes = frame.data  # type: ignore[assignment]  # bytes or bytearray
        if frame.opcode is not Opcode.CONT:
            self._text = frame.opcode is Opcode.TEXT
        if not frame.fin or self._fragments:  # a fragmented message (rare)
            self._fragments.append(data)
            if not frame.fin:
                return
            data = b"".join(self._fragments)
            self._fragments = []
        message: str | bytes = data
        if self._text:
            try:
                message = data.decode()
            except UnicodeDecodeError:  # handed over as bytes: the wire finds it unreadable
                message = bytes(data)
        elif type(data) is not bytes:
            message = bytes(data)
        self.inbox.append(message)
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def take(self, loop: asyncio.AbstractEventLoop, timeout: float) -> list[str | bytes]:
        """The messages received, waiting up to ``timeout`` for one when there are none.
        ConnectionClosed once the connection is closed and every message taken."""
        if not self.inbox and self.protocol.state is not State.CLOSED:
            waiter = self.waiter = loop.create_future()
            timer = loop.call_later(timeout, _done, waiter)
            try:
                loop.run_until_complete(waiter)
            finally:
                timer.cancel()
                self.waiter = None
        messages, self.inbox = self.inbox, []
        if not messages and self.protocol.state is State.CLOSED:
            raise self.protocol.close_exc
        return messages


def _done(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _close_loop(loop: asyncio.AbstractEventLoop) -> None:
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()


class _Ended(Exception):
    def __init__(self, reason: str, *, planned: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.planned = planned  # ours or the exchange's plan, not a failure


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class WireConnection:
    """Drives one wire over successive WebSocket connections for a set of markets.

    ``url`` overrides ``wire.default_ws_url`` (a fake server, a proxy). ``poll_s`` bounds
    how long a stop request can go unnoticed. ``proxy`` is passed to websockets'
    ``connect`` (True: from the environment; None: direct)."""

    def __init__(
        self,
        wire: ExchangeWire,
        markets: Sequence[Market],
        *,
        url: str | None = None,
        backoff: Backoff | None = None,
        open_timeout_s: float = 10.0,
        close_timeout_s: float = 2.0,
        poll_s: float = 0.2,
        proxy: str | bool | None = True,
        rng: random.Random | None = None,
    ) -> None:
        self.wire = wire
        self.markets = list(markets)
        self.base_url = url or wire.default_ws_url
        self.backoff = backoff or Backoff()
        self.open_timeout_s = open_timeout_s
        self.close_timeout_s = close_timeout_s
        self.poll_s = poll_s
        self.proxy = proxy
        self.counters = ConnectionCounters()
        self._rng = rng or random.Random()
        self._announced = False  # Connected was yielded for the current connection

    def events(self, stop: StopFlag) -> Iterator[StreamEvent]:
        """Trades and connection events until ``stop`` is set (or the caller stops
        iterating). Never raises for network trouble: it reconnects."""
        for batch in self.batches(stop):
            yield from batch

    def batches(self, stop: StopFlag) -> Iterator[list[StreamEvent]]:
        """:meth:`events` in lists, in order: what one wakeup received (never empty)."""
        loop = asyncio.new_event_loop()
        try:
            yield from self._connections(loop, stop)
        finally:
            _close_loop(loop)

    def _connections(self, loop: asyncio.AbstractEventLoop, stop: StopFlag) -> Iterator[list[StreamEvent]]:
        failures = 0
        while not stop.is_set():
            url = self.wire.stream_url(self.base_url, self.markets)
            try:
                ws = loop.run_until_complete(
                    connect(
                        url,
                        open_timeout=self.open_timeout_s,
                        close_timeout=self.close_timeout_s,
                        proxy=self.proxy,  # type: ignore[arg-type]
                        create_connection=_FeedConnection,
                        max_size=2**22,
                    )
                )
            except (OSError, WebSocketException) as exc:  # TimeoutError is an OSError
                failures += 1
                self.counters.failed_connects += 1
                self._problem(f"{self.wire.name}: connect to {url} failed: {exc!r}")
                stop.wait(self.backoff.delay(failures, self._rng))
                continue
            assert isinstance(ws, _FeedConnection)
            opened = time.monotonic()
            ended = _Ended("stopped", planned=True)
            self._announced = False
            try:
                yield from self._session(loop, ws, url, failures + 1, stop)
            except _Ended as exc:
                ended = exc
            except ConnectionClosed as exc:
                ended = _Ended(
                    f"closed: {exc}", planned=exc.rcvd is not None and exc.rcvd.code in (1000, 1001)
                )
            except (OSError, WebSocketException) as exc:
                ended = _Ended(f"error: {exc!r}")
            finally:
                self.counters.connected = False
                if not ended.planned:  # a dead peer would hold the close handshake: do not wait
                    ws.close_timeout = min(self.close_timeout_s, 0.5)
                loop.run_until_complete(ws.close())
            if ended.reason != "stopped":
                self._problem(f"{self.wire.name}: disconnected ({ended.reason})", level=logging.INFO)
            if self._announced:
                yield [Disconnected(_now_ms(), ended.reason)]
            else:  # it broke while subscribing: a failed attempt, not a connection
                self.counters.failed_connects += 1
                ended.planned = ended.planned and ended.reason == "stopped"
            healthy = time.monotonic() - opened >= self.backoff.healthy_s
            if healthy:
                failures = 0
            if ended.planned and (healthy or failures == 0):
                # a planned reconnect goes right away, once per healthy spell: a server
                # that keeps closing at once still gets backed off
                failures = 0 if healthy else 1
                continue
            failures += 1
            stop.wait(self.backoff.delay(failures, self._rng))

    def _session(
        self, loop: asyncio.AbstractEventLoop, ws: _FeedConnection, url: str, attempt: int, stop: StopFlag
    ) -> Iterator[list[StreamEvent]]:
        wire, counters = self.wire, self.counters
        for message in wire.subscribe(self.markets):
            loop.run_until_complete(ws.send(message))
        opened = ws.last_frame_at = last_ping = time.monotonic()
        if counters.connects:
            counters.reconnects += 1
        counters.connects += 1
        counters.connected = True
        self._announced = True
        yield [Connected(_now_ms(), attempt, url)]
        max_age = wire.max_connection_s
        while True:
            if stop.is_set():
                raise _Ended("stopped", planned=True)
            now = time.monotonic()
            if max_age is not None and now - opened >= max_age:
                raise _Ended("max age", planned=True)
            messages: list[str | bytes] = []
            idle = now - ws.last_frame_at
            if idle >= wire.silence_s:
                # The caller may have held the last batch for longer than that: what the
                # exchange sent meanwhile waits unread in the socket. Read it first.
                messages = ws.take(loop, 0.0)
                now = time.monotonic()
                idle = now - ws.last_frame_at
            if idle >= wire.silence_s:
                counters.dead += 1
                raise _Ended(f"silent for {idle:.1f} s")
            if idle >= wire.silence_s / 2 and now - last_ping >= wire.silence_s / 2:
                ping = wire.ping()  # an idle line: ask the exchange for a sign of life
                if ping is not None:
                    loop.run_until_complete(ws.send(ping))
                last_ping = now
            timeout = min(self.poll_s, wire.silence_s - idle)
            if max_age is not None:
                timeout = min(timeout, max_age - (now - opened))
            if not messages:
                messages = ws.take(loop, max(timeout, 0.001))
            if not messages:
                continue
            counters.frames += len(messages)
            batch: list[StreamEvent] = []
            for frame in messages:
                for event in self._parse(frame):
                    if isinstance(event, TradeEvent):
                        batch.append(event)
                    elif isinstance(event, Garbage):
                        counters.garbage += 1
                        self._problem(f"{wire.name}: unreadable frame ({event.reason})", level=logging.DEBUG)
                    elif isinstance(event, Control) and event.kind == "shutdown":
                        counters.trades += len(batch)
                        if batch:
                            yield batch
                        raise _Ended("server shutdown", planned=True)
            if batch:
                counters.trades += len(batch)
                yield batch

    def _parse(self, frame: str | bytes) -> list[TradeEvent | Control | Garbage]:
        try:
            return self.wire.parse(frame)
        except Exception as exc:  # a wire bug must not end the feed: count the frame
            return [Garbage(f"parse raised {exc!r}")]

    def _problem(self, message: str, *, level: int = logging.WARNING) -> None:
        self.counters.last_problem = message
        log.log(level, message)
