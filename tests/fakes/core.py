"""The machinery every fake exchange shares: the trade store, the live publisher, the
WebSocket and HTTP servers on loopback, and the scripted faults.

What each exchange says (paths, field names, error bodies) lives in its dialect module
(:mod:`tests.fakes.binance`, ``coinbase``, ``kraken``); this module knows none of it.

Time model: a market's trade set is split into *history* (published when the fake
starts: REST has it, the stream never sends it) and a *live tail* published one trade at
a time at ``pace_s`` (or by :meth:`FakeExchange.publish`). A published trade is in the
REST history from then on and is sent to every connection subscribed to its market at
that moment; a client that is not connected misses it, as on a real exchange.
"""

from __future__ import annotations

import contextlib
import json
import queue
import re
import socket
import struct
import threading
import time
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple, Protocol
from urllib.parse import parse_qsl, urlsplit

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import Server, ServerConnection, serve

from cryptoctl.exchanges.trade import Market, Trade
from tests.fakes.trades import MINUTE_MS, assign_micros


class Bar(NamedTuple):
    """One exchange minute as the exchange's own candle endpoints compute it."""

    start_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: Decimal  # exact sums of the trades' decimal strings
    quote_volume: Decimal
    trade_count: int
    buy_volume: Decimal
    buy_quote_volume: Decimal


@dataclass
class RestReply:
    status: int
    body: Any  # JSON-able, or a str already encoded as JSON
    headers: dict[str, str] = field(default_factory=dict)


class RestRequest(NamedTuple):
    path: str
    params: dict[str, str]


class Dialect(Protocol):
    kind: str

    def on_open(self, session: Session) -> None: ...

    def on_message(self, session: Session, text: str) -> None: ...

    def trade_frames(self, session: Session, market: Market, trade: Trade) -> list[str]: ...

    def idle(self, session: Session, now: float) -> None: ...

    def shutdown_frames(self) -> list[str]: ...

    def garbage_frames(self) -> list[str | bytes]: ...

    def route(self, path: str) -> str: ...

    def rest(self, request: RestRequest) -> RestReply: ...

    def limited(self, status: int, retry_after_s: int) -> RestReply: ...

    def reply_headers(self, route: str) -> dict[str, str]: ...


@dataclass
class Faults:
    """Faults a test scripts; read by the server threads (plain values, set them before
    the moment they should bite)."""

    drop_next: int = 0  # the next N published trades go to REST but not to the stream
    drop_market: Market | None = None  # only count/drop trades of this market
    replay_on_connect: int = 0  # a new subscription first gets the last N trades again
    replay_times: int = 1  # ... for this many subscriptions
    cut_after: int | None = None  # cut every connection after N more published trades
    rest_429: int = 0  # the next K REST requests answer 429 with Retry-After
    rest_ban: int = 0  # the next K REST requests answer 418 (-1: for ever)
    retry_after_s: int = 1
    rest_delay_s: float = 0.0  # every REST request is answered this late (a slow exchange)
    holes: dict[Market, list[tuple[int, int]]] = field(default_factory=dict)
    dropped: list[tuple[Market, Trade]] = field(default_factory=list)  # what drop_next took

    def forget(self, market: Market, first_id: int, last_id: int) -> None:
        """REST "no longer has" trades first_id..last_id: a gap there cannot be filled."""
        self.holes.setdefault(market, []).append((first_id, last_id))

    def in_hole(self, market: Market, trade_id: int) -> bool:
        return any(a <= trade_id <= b for a, b in self.holes.get(market, ()))


class Session:
    """One WebSocket client of the fake: its subscriptions and its outbound queue."""

    def __init__(self, fx: FakeExchange, conn: ServerConnection) -> None:
        self.fx = fx
        self.conn = conn
        request = conn.request
        split = urlsplit(request.path if request is not None else "/")
        self.path = split.path
        self.query = dict(parse_qsl(split.query))
        self.markets: set[Market] = set()
        self.channels: set[str] = set()
        self.state: dict[str, Any] = {}  # the dialect's own per-connection state
        self.outbox: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self.silent = False
        self.closed = threading.Event()
        self.opened_at = time.monotonic()
        self.last_sent = self.opened_at
        self.sent: list[tuple[Market, int]] = []  # trade ids sent, in order
        self.received: list[str] = []  # client frames, in order

    # -- called by dialects (any thread) --
    def put(self, text: str | bytes) -> None:
        self.outbox.put(("text", text))

    def subscribe(self, markets: Sequence[Market], before: Sequence[str] = ()) -> None:
        """Queue ``before`` (the ack), then start this session's share of the stream."""
        self.fx._subscribe(self, markets, before)

    def close(self, code: int = 1000, reason: str = "") -> None:
        self.outbox.put(("close", code, reason))

    # -- the pump thread --
    def pump(self, dialect: Dialect) -> None:
        while not self.closed.is_set():
            try:
                item: tuple[Any, ...] | None = self.outbox.get(timeout=0.02)
            except queue.Empty:
                item = None
            try:
                if item is not None and not self._deliver(dialect, item):
                    return
                if not self.silent:
                    dialect.idle(self, time.monotonic())  # heartbeats, pings: due or not
            except (ConnectionClosed, OSError):
                return

    def _deliver(self, dialect: Dialect, item: tuple[Any, ...]) -> bool:
        kind = item[0]
        if kind == "cut":
            self.abort()
            return False
        if kind == "close":
            self.conn.close(item[1], item[2])
            return False
        if self.silent:
            return True
        if kind == "text":
            self.send_now(item[1])
        elif kind == "trade":
            _, market, trade = item
            for frame in dialect.trade_frames(self, market, trade):
                self.send_now(frame)
            self.sent.append((market, trade.trade_id))
        return True

    def send_now(self, frame: str | bytes) -> None:
        self.conn.send(frame)
        self.last_sent = time.monotonic()

    def ping(self) -> None:
        self.conn.ping()
        self.last_sent = time.monotonic()

    def abort(self) -> None:
        """Cut the TCP connection with no close frame: RST, as a dropped route does."""
        sock = self.conn.socket
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.shutdown(socket.SHUT_RD)  # wakes the library's reader thread
        with contextlib.suppress(OSError):
            sock.close()
        self.closed.set()


class FakeExchange:
    """One fake exchange on loopback: WebSocket stream + REST history from one trade set.

    ``trades`` maps each market (``Market(kind, "BTC", "USDT")``) to its trade set, ids
    consecutive and ascending. ``live`` is how many trades at the end of each set are
    streamed live (None: all of them); the rest is history from the start.
    ``pace_s`` is the time between two live trades (None: only :meth:`publish` does).
    With ``wait_for_subscriber`` the live tail starts with the first subscription.
    ``micros`` overrides the sub-millisecond parts (default :func:`assign_micros`).
    """

    def __init__(
        self,
        kind: str,
        trades: Mapping[Market, Sequence[Trade]],
        *,
        live: int | None = None,
        pace_s: float | None = 0.005,
        wait_for_subscriber: bool = True,
        ping_interval_s: float = 20.0,
        heartbeat_s: float = 1.0,
        subscribe_timeout_s: float = 5.0,
        weight_limit: int = 6000,
        micros: Mapping[Market, Mapping[int, int]] | None = None,
    ) -> None:
        from tests.fakes import binance, coinbase, kraken

        dialects: dict[str, Callable[[FakeExchange], Dialect]] = {
            "binance": binance.BinanceDialect,
            "coinbase": coinbase.CoinbaseDialect,
            "kraken": kraken.KrakenDialect,
        }
        if kind not in dialects:
            raise ValueError(f"unknown exchange kind {kind!r}")
        for market in trades:
            if market.source != kind:
                raise ValueError(f"{market} is not a {kind} market")
        self.kind = kind
        self.markets = list(trades)
        self.trade_sets = {m: list(ts) for m, ts in trades.items()}
        # the sub-millisecond part Coinbase and Kraken send, per market and trade id
        self.micros = {m: dict(micros[m]) if micros else assign_micros(ts) for m, ts in trades.items()}
        self.pace_s = pace_s
        self.wait_for_subscriber = wait_for_subscriber
        self.ping_interval_s = ping_interval_s
        self.heartbeat_s = heartbeat_s
        self.subscribe_timeout_s = subscribe_timeout_s
        self.weight_limit = weight_limit
        self.faults = Faults()
        self.requests: Counter[str] = Counter()  # REST requests per route
        self.request_log: list[tuple[str, dict[str, str], int]] = []
        self.connections = 0  # WebSocket connections accepted so far
        self.now_override_ms: int | None = None
        self.lock = threading.RLock()
        self.published: dict[Market, list[Trade]] = {}
        pending: list[tuple[int, int, int, Market, Trade]] = []
        for index, (market, ts) in enumerate(self.trade_sets.items()):
            split = 0 if live is None else max(0, len(ts) - live)
            self.published[market] = list(ts[:split])
            pending.extend((t.ts, index, t.trade_id, market, t) for t in ts[split:])
        pending.sort(key=lambda p: p[:3])
        self._pending = [(p[3], p[4]) for p in pending]
        self._next = 0
        self._sessions: list[Session] = []
        self._subscribed = threading.Event()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._bars_cache: dict[Market, tuple[int, list[Bar]]] = {}
        self.dialect = dialects[kind](self)
        self._ws: Server | None = None
        self._http: ThreadingHTTPServer | None = None

    # -- lifecycle --
    def start(self) -> FakeExchange:
        self._ws = serve(
            self._ws_handler, "127.0.0.1", 0, ping_interval=None, close_timeout=1, compression=None
        )
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _http_handler(self))
        self._http.daemon_threads = True
        self._spawn(self._ws.serve_forever, "fake-ws")
        self._spawn(self._http.serve_forever, "fake-rest")
        if self.pace_s is not None:
            self._spawn(self._publisher, "fake-publisher")
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._ws is not None:
            self._ws.shutdown()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        for session in self.sessions():
            session.abort()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> FakeExchange:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def ws_port(self) -> int:
        assert self._ws is not None, "not started"
        return int(self._ws.socket.getsockname()[1])

    @property
    def ws_url(self) -> str:
        suffix = "/v2" if self.kind == "kraken" else ""
        return f"ws://127.0.0.1:{self.ws_port}{suffix}"

    @property
    def rest_url(self) -> str:
        assert self._http is not None, "not started"
        return f"http://127.0.0.1:{self._http.server_address[1]}"

    # -- the trade store --
    def publish(self, n: int | None = None) -> int:
        """Publish the next ``n`` live trades now (all remaining when None)."""
        done = 0
        while n is None or done < n:
            with self.lock:
                if self._next >= len(self._pending):
                    break
                market, trade = self._pending[self._next]
                self._next += 1
                self._publish_one(market, trade)
            done += 1
        return done

    @property
    def live_remaining(self) -> int:
        return len(self._pending) - self._next

    def wait_published(self, timeout: float = 10.0) -> bool:
        """Wait until the whole live tail is published."""
        deadline = time.monotonic() + timeout
        while self.live_remaining and time.monotonic() < deadline:
            time.sleep(0.005)
        return self.live_remaining == 0

    def time_us(self, market: Market, trade: Trade) -> int:
        """The trade's time in epoch microseconds, as Coinbase and Kraken send it."""
        return trade.ts * 1000 + self.micros[market][trade.trade_id]

    def rest_trades(self, market: Market) -> list[Trade]:
        """What the REST history has now: published, minus the holes."""
        with self.lock:
            trades = list(self.published[market])
        if market in self.faults.holes:
            trades = [t for t in trades if not self.faults.in_hole(market, t.trade_id)]
        return trades

    def rest_trades_from_id(self, market: Market, from_id: int, limit: int) -> list[Trade]:
        trades = self.rest_trades(market)
        start = bisect_left(trades, from_id, key=lambda t: t.trade_id)
        return trades[start : start + limit]

    def rest_trades_between(self, market: Market, start_ms: int, end_ms: int) -> list[Trade]:
        trades = self.rest_trades(market)
        lo = bisect_left(trades, start_ms, key=lambda t: t.ts)
        hi = bisect_right(trades, end_ms, key=lambda t: t.ts)
        return trades[lo:hi]

    @property
    def now_ms(self) -> int:
        """The exchange's clock: the latest published trade (its minute is still open)."""
        if self.now_override_ms is not None:
            return self.now_override_ms
        with self.lock:
            latest = [ts[-1].ts for ts in self.published.values() if ts]
        if latest:
            return max(latest)
        return min((ts[0].ts for ts in self.trade_sets.values() if ts), default=0)

    def bars(self, market: Market) -> list[Bar]:
        """Every minute from the first published trade's to the clock's, empty ones
        included (count 0, OHLC = previous close); the last one is still forming."""
        with self.lock:
            trades = self.published[market]
            key = len(trades)
            cached = self._bars_cache.get(market)
            if cached is not None and cached[0] == key and self.now_override_ms is None:
                return cached[1]
            trades = list(trades)
        bars = _minute_bars(trades, self.now_ms)
        self._bars_cache[market] = (key, bars)
        return bars

    def market_by(self, predicate: Callable[[Market], bool]) -> Market | None:
        return next((m for m in self.markets if predicate(m)), None)

    # -- connections and stream faults --
    def sessions(self) -> list[Session]:
        with self.lock:
            return [s for s in self._sessions if not s.closed.is_set()]

    def wait_sessions(self, n: int, timeout: float = 5.0) -> list[Session]:
        """Wait for ``n`` open, subscribed connections."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            subscribed = [s for s in self.sessions() if s.markets]
            if len(subscribed) >= n:
                return subscribed
            time.sleep(0.005)
        raise TimeoutError(f"fewer than {n} subscribed connections after {timeout} s")

    def cut(self) -> None:
        """Abort every open connection (TCP reset, no close frame), after what is queued."""
        for session in self.sessions():
            session.outbox.put(("cut",))

    def silence(self) -> None:
        """Open connections stay open but get nothing more: no trades, heartbeats, pings
        or replies (a new connection is served normally)."""
        for session in self.sessions():
            session.silent = True

    def server_shutdown(self) -> None:
        """The exchange's planned restart: its notice (Binance serverShutdown), then a close."""
        for session in self.sessions():
            for frame in self.dialect.shutdown_frames():
                session.put(frame)
            session.close(1001, "server shutdown")

    def send_garbage(self) -> None:
        """A non-JSON frame and a JSON frame of an unknown type on every open connection."""
        for session in self.sessions():
            for frame in self.dialect.garbage_frames():
                session.put(frame)

    def sent_ids(self, market: Market) -> list[int]:
        """Trade ids sent on all connections so far, in order (duplicates included)."""
        with self.lock:
            sessions = list(self._sessions)
        return [tid for s in sessions for m, tid in s.sent if m == market]

    # -- internals --
    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _publisher(self) -> None:
        assert self.pace_s is not None
        while not self._stopping.is_set():
            if self.wait_for_subscriber and not self._subscribed.is_set():
                self._subscribed.wait(0.02)
                continue
            if not self.publish(1):
                self._stopping.wait(0.02)
                continue
            if self.pace_s:
                self._stopping.wait(self.pace_s)

    def _publish_one(self, market: Market, trade: Trade) -> None:
        self.published[market].append(trade)
        faults = self.faults
        if faults.drop_next > 0 and faults.drop_market in (None, market):
            faults.drop_next -= 1
            faults.dropped.append((market, trade))
        else:
            for session in self._sessions:
                if market in session.markets and not session.closed.is_set():
                    session.outbox.put(("trade", market, trade))
        if faults.cut_after is not None:
            faults.cut_after -= 1
            if faults.cut_after <= 0:
                faults.cut_after = None
                self.cut()

    def _subscribe(self, session: Session, markets: Sequence[Market], before: Sequence[str]) -> None:
        with self.lock:
            for frame in before:
                session.put(frame)
            faults = self.faults
            if faults.replay_on_connect and faults.replay_times > 0 and self._subscribed.is_set():
                faults.replay_times -= 1
                for market in markets:
                    for trade in self.published[market][-faults.replay_on_connect :]:
                        session.outbox.put(("trade", market, trade))
            session.markets.update(markets)
        self._subscribed.set()

    def _ws_handler(self, conn: ServerConnection) -> None:
        session = Session(self, conn)
        with self.lock:
            self._sessions.append(session)
            self.connections += 1
        pump = threading.Thread(target=session.pump, args=(self.dialect,), daemon=True)
        pump.start()
        try:
            self.dialect.on_open(session)
            for message in conn:
                text = message if isinstance(message, str) else message.decode("utf-8", "replace")
                session.received.append(text)
                if not session.silent:
                    self.dialect.on_message(session, text)
        except (ConnectionClosed, OSError):
            pass
        finally:
            session.closed.set()
            pump.join(timeout=2)

    def _rest(self, path: str, params: dict[str, str]) -> tuple[str, RestReply]:
        route = self.dialect.route(path)
        faults = self.faults
        if faults.rest_delay_s:
            time.sleep(faults.rest_delay_s)
        with self.lock:
            self.requests[route] += 1
            if faults.rest_ban:
                faults.rest_ban -= 1 if faults.rest_ban > 0 else 0
                reply = self.dialect.limited(418, faults.retry_after_s)
            elif faults.rest_429 > 0:
                faults.rest_429 -= 1
                reply = self.dialect.limited(429, faults.retry_after_s)
            else:
                reply = None
        if reply is None:
            try:
                reply = self.dialect.rest(RestRequest(path, params))
            except _BadRequest as exc:
                reply = exc.reply
        reply.headers = {**self.dialect.reply_headers(route), **reply.headers}
        with self.lock:
            self.request_log.append((route, params, reply.status))
        return route, reply


class _BadRequest(Exception):
    def __init__(self, reply: RestReply) -> None:
        super().__init__(reply.status)
        self.reply = reply


def bad_request(reply: RestReply) -> _BadRequest:
    """Raise this from a dialect to answer with ``reply`` (a parameter it rejects)."""
    return _BadRequest(reply)


def int_param(params: dict[str, str], name: str, error: RestReply, default: int | None = None) -> int | None:
    value = params.get(name)
    if value is None:
        return default
    if not re.fullmatch(r"-?\d+", value):
        raise bad_request(error)
    return int(value)


def _minute_bars(trades: Sequence[Trade], now_ms: int) -> list[Bar]:
    """One pass over trades in (ts, id) order, the way an exchange's candle job would."""
    ordered = sorted(trades, key=lambda t: (t.ts, t.trade_id))
    bars: list[Bar] = []
    if not ordered:
        return bars
    minute = ordered[0].ts // MINUTE_MS * MINUTE_MS
    last_minute = max(now_ms, ordered[-1].ts) // MINUTE_MS * MINUTE_MS
    i = 0
    close = ordered[0].price
    while minute <= last_minute:
        o = h = lo = close
        vol = quote = buy = buy_quote = Decimal(0)
        count = 0
        while i < len(ordered) and ordered[i].ts < minute + MINUTE_MS:
            t = ordered[i]
            if count == 0:
                o = h = lo = t.price
            h, lo = max(h, t.price), min(lo, t.price)
            close = t.price
            qty, notional = Decimal(repr(t.qty)), Decimal(repr(t.qty)) * Decimal(repr(t.price))
            vol += qty
            quote += notional
            if t.side == "buy":
                buy += qty
                buy_quote += notional
            count += 1
            i += 1
        bars.append(Bar(minute, o, h, lo, close, vol, quote, count, buy, buy_quote))
        minute += MINUTE_MS
    return bars


def _http_handler(fx: FakeExchange) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            split = urlsplit(self.path)
            params = dict(parse_qsl(split.query, keep_blank_values=True))
            _, reply = fx._rest(split.path, params)
            body = (
                reply.body if isinstance(reply.body, str) else json.dumps(reply.body, separators=(",", ":"))
            )
            data = body.encode()
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextlib.contextmanager
def fake_exchange(
    kind: str, trades: Mapping[Market, Sequence[Trade]], **options: Any
) -> Iterator[FakeExchange]:
    """``with fake_exchange("binance", {market: trades}) as fx:`` — fx.ws_url, fx.rest_url."""
    fx = FakeExchange(kind, trades, **options)
    fx.start()
    try:
        yield fx
    finally:
        fx.stop()
