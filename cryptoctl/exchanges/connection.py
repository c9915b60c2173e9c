"""The WebSocket connection loop: connect, subscribe, read, and reconnect, for any
:class:`~cryptoctl.exchanges.wire.ExchangeWire`.

It yields the trades the wire parses, plus :class:`Connected` and :class:`Disconnected`
around each connection, so the feed layer can tell the continuity engine "a reconnect
happened" before the next trade. Exchange formats stay in the wire modules; sockets
stay here.

A connection is declared dead when no frame at all arrived for ``wire.silence_s``
(data, or a server ping: both prove the exchange is still talking to us; our own
keepalive's pongs do not count). It is replaced before ``wire.max_connection_s``, and
after a ``Control("shutdown")``. Failed or short-lived connections are retried with
exponential backoff and full jitter; a connection that stayed up for
``Backoff.healthy_s`` resets the backoff.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from websockets.exceptions import ConnectionClosed, WebSocketException
from websockets.frames import Frame, Opcode
from websockets.sync.client import ClientConnection, connect

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


class _StampedConnection(ClientConnection):
    """A client connection that notes when the server last sent anything (a data frame or
    a ping), which ``recv`` alone cannot tell."""

    last_frame_at = 0.0

    def process_event(self, event: Any) -> None:
        if isinstance(event, Frame) and event.opcode is not Opcode.PONG:
            self.last_frame_at = time.monotonic()
        super().process_event(event)


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
        failures = 0
        while not stop.is_set():
            url = self.wire.stream_url(self.base_url, self.markets)
            try:
                # as a context manager, entered by hand: the session is a generator
                opener = connect(
                    url,
                    open_timeout=self.open_timeout_s,
                    close_timeout=self.close_timeout_s,
                    proxy=self.proxy,  # type: ignore[arg-type]
                    create_connection=_StampedConnection,
                    max_size=2**22,
                )
                ws = opener.__enter__()
            except (OSError, WebSocketException) as exc:
                failures += 1
                self.counters.failed_connects += 1
                self._problem(f"{self.wire.name}: connect to {url} failed: {exc!r}")
                stop.wait(self.backoff.delay(failures, self._rng))
                continue
            assert isinstance(ws, _StampedConnection)
            opened = time.monotonic()
            ended = _Ended("stopped", planned=True)
            self._announced = False
            try:
                yield from self._session(ws, url, failures + 1, stop)
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
                opener.__exit__(None, None, None)
            if ended.reason != "stopped":
                self._problem(f"{self.wire.name}: disconnected ({ended.reason})", level=logging.INFO)
            if self._announced:
                yield Disconnected(_now_ms(), ended.reason)
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
        self, ws: _StampedConnection, url: str, attempt: int, stop: StopFlag
    ) -> Iterator[StreamEvent]:
        wire, counters = self.wire, self.counters
        for message in wire.subscribe(self.markets):
            ws.send(message)
        opened = ws.last_frame_at = last_ping = time.monotonic()
        if counters.connects:
            counters.reconnects += 1
        counters.connects += 1
        counters.connected = True
        self._announced = True
        yield Connected(_now_ms(), attempt, url)
        max_age = wire.max_connection_s
        while True:
            if stop.is_set():
                raise _Ended("stopped", planned=True)
            now = time.monotonic()
            if max_age is not None and now - opened >= max_age:
                raise _Ended("max age", planned=True)
            idle = now - ws.last_frame_at
            if idle >= wire.silence_s:
                counters.dead += 1
                raise _Ended(f"silent for {idle:.1f} s")
            if idle >= wire.silence_s / 2 and now - last_ping >= wire.silence_s / 2:
                ping = wire.ping()  # an idle line: ask the exchange for a sign of life
                if ping is not None:
                    ws.send(ping)
                last_ping = now
            timeout = min(self.poll_s, wire.silence_s - idle)
            if max_age is not None:
                timeout = min(timeout, max_age - (now - opened))
            try:
                frame = ws.recv(timeout=max(timeout, 0.001))
            except TimeoutError:
                continue
            counters.frames += 1
            for event in self._parse(frame):
                if isinstance(event, TradeEvent):
                    counters.trades += 1
                    yield event
                elif isinstance(event, Garbage):
                    counters.garbage += 1
                    self._problem(f"{wire.name}: unreadable frame ({event.reason})", level=logging.DEBUG)
                elif event.kind == "shutdown":
                    raise _Ended("server shutdown", planned=True)

    def _parse(self, frame: str | bytes) -> list[TradeEvent | Control | Garbage]:
        try:
            return self.wire.parse(frame)
        except Exception as exc:  # a wire bug must not end the feed: count the frame
            return [Garbage(f"parse raised {exc!r}")]

    def _problem(self, message: str, *, level: int = logging.WARNING) -> None:
        self.counters.last_problem = message
        log.log(level, message)
