"""The connection loop against the fake exchanges over loopback, with minimal wires
written here (the real wire modules are tested on their own)."""

from __future__ import annotations

import json
import queue
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from cryptoctl.exchanges.connection import (
    Backoff,
    Connected,
    Disconnected,
    StreamEvent,
    WireConnection,
)
from cryptoctl.exchanges.trade import Market, Trade
from cryptoctl.exchanges.wire import Control, Event, Garbage, TradeEvent
from tests.fakes import FakeExchange, fake_exchange, generate_trades

BTC = Market("binance", "BTC", "USDT")
TRADES = generate_trades(3, 400)
FAST = Backoff(initial_s=0.05, max_s=0.2, healthy_s=60.0)


class MiniBinanceWire:
    """Just enough of Binance's combined stream to drive the loop."""

    name = "binance"
    default_ws_url = "wss://stream.binance.com:9443"
    default_rest_url = "https://api.binance.com"
    default_quote = "USDT"

    def __init__(self, silence_s: float = 5.0, max_connection_s: float | None = None) -> None:
        self.silence_s = silence_s
        self.max_connection_s = max_connection_s
        self.urls_at: list[float] = []

    def exchange_symbol(self, market: Market) -> str:
        return market.symbol + market.quote

    def stream_url(self, base_url: str, markets: Sequence[Market]) -> str:
        self.urls_at.append(time.monotonic())
        return (
            base_url
            + "/stream?streams="
            + "/".join(f"{self.exchange_symbol(m).lower()}@trade" for m in markets)
        )

    def subscribe(self, markets: Sequence[Market]) -> list[str]:
        return []

    def ping(self) -> str | None:
        return None

    def parse(self, frame: str | bytes) -> list[Event]:
        try:
            msg = json.loads(frame)
        except ValueError:
            return [Garbage("not JSON")]
        data = msg.get("data", msg) if isinstance(msg, dict) else None
        if not isinstance(data, dict):
            return [Garbage("not an object")]
        if data.get("e") == "serverShutdown":
            return [Control("shutdown")]
        if data.get("e") != "trade":
            return [Garbage(f"unknown event {data.get('e')!r}")]
        side = "sell" if data["m"] else "buy"
        trade = Trade(data["t"], data["T"], float(data["p"]), float(data["q"]), side)
        return [TradeEvent(BTC, trade)]


class MiniKrakenWire(MiniBinanceWire):
    """Kraken v2 trades, app-level ping: the loop must ping when the line goes quiet."""

    name = "kraken"
    market = Market("kraken", "BTC", "USD")

    def stream_url(self, base_url: str, markets: Sequence[Market]) -> str:
        return base_url

    def subscribe(self, markets: Sequence[Market]) -> list[str]:
        params = {"channel": "trade", "symbol": ["BTC/USD"], "snapshot": False}
        return [json.dumps({"method": "subscribe", "params": params, "req_id": 1})]

    def ping(self) -> str | None:
        return json.dumps({"method": "ping"})

    def parse(self, frame: str | bytes) -> list[Event]:
        msg = json.loads(frame)
        if msg.get("method") == "pong":
            return [Control("pong")]
        if msg.get("channel") == "trade":
            return [
                TradeEvent(self.market, Trade(d["trade_id"], 0, d["price"], d["qty"], d["side"]))
                for d in msg["data"]
            ]
        return [Control("ignored")]


class Runner:
    """The loop in a thread, its events in a queue, the way a feed would run it."""

    def __init__(self, conn: WireConnection) -> None:
        self.conn = conn
        self.stop = threading.Event()
        self.events: queue.Queue[tuple[float, StreamEvent]] = queue.Queue()
        self.seen: list[tuple[float, StreamEvent]] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        for event in self.conn.events(self.stop):
            self.events.put((time.monotonic(), event))

    def until(
        self, predicate: Callable[[StreamEvent], bool], timeout: float = 5.0
    ) -> tuple[float, StreamEvent]:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no such event in {timeout} s; saw {[e for _, e in self.seen][-5:]}")
            try:
                item = self.events.get(timeout=remaining)
            except queue.Empty:
                continue
            self.seen.append(item)
            if predicate(item[1]):
                return item

    def trade_ids(self) -> list[int]:
        return [e.trade.trade_id for _, e in self.seen if isinstance(e, TradeEvent)]

    def kinds(self) -> list[str]:
        return [type(e).__name__ for _, e in self.seen if not isinstance(e, TradeEvent)]

    def close(self) -> float:
        started = time.monotonic()
        self.stop.set()
        self.thread.join(timeout=5)
        assert not self.thread.is_alive()
        return time.monotonic() - started


def trade_id(n: int) -> Callable[[StreamEvent], bool]:
    return lambda e: isinstance(e, TradeEvent) and e.trade.trade_id >= n


def is_(kind: type) -> Callable[[StreamEvent], bool]:
    return lambda e: isinstance(e, kind)


def run(fx: FakeExchange, wire: MiniBinanceWire, **options: Any) -> Runner:
    options.setdefault("backoff", FAST)
    return Runner(WireConnection(wire, [BTC], url=fx.ws_url, proxy=None, **options))


@pytest.fixture
def fx() -> Iterator[FakeExchange]:
    with fake_exchange("binance", {BTC: TRADES}, live=300, pace_s=0.003) as fake:
        yield fake


def test_normal_stream_delivers_every_trade_in_order(fx: FakeExchange) -> None:
    runner = run(fx, MiniBinanceWire())
    _, first = runner.until(lambda e: True)
    assert isinstance(first, Connected) and first.attempt == 1 and "btcusdt@trade" in first.url
    runner.until(trade_id(400))
    assert runner.trade_ids() == list(range(101, 401))
    assert runner.conn.counters.trades == 300 and runner.conn.counters.reconnects == 0
    assert runner.conn.counters.connected
    runner.close()
    assert not runner.conn.counters.connected


def test_cut_without_close_frame_reconnects_and_continues(fx: FakeExchange) -> None:
    fx.faults.cut_after = 50
    runner = run(fx, MiniBinanceWire())
    _, gone = runner.until(is_(Disconnected))
    assert isinstance(gone, Disconnected) and ("closed" in gone.reason or "error" in gone.reason)
    _, back = runner.until(is_(Connected))
    assert isinstance(back, Connected)
    runner.until(trade_id(400))
    ids = runner.trade_ids()
    assert ids[:50] == list(range(101, 151)) and ids[-1] == 400
    assert ids == sorted(ids) and len(set(ids)) == len(ids)  # what was missed is for the REST refill
    assert runner.kinds() == ["Connected", "Disconnected", "Connected"]
    assert runner.conn.counters.reconnects == 1 and fx.connections == 2
    runner.close()


def test_silence_is_declared_dead_within_silence_s_and_reconnects(fx: FakeExchange) -> None:
    wire = MiniBinanceWire(silence_s=0.5)
    runner = run(fx, wire)
    runner.until(trade_id(150))
    fx.silence()
    silenced = time.monotonic()
    at, gone = runner.until(is_(Disconnected))
    assert isinstance(gone, Disconnected) and gone.reason.startswith("silent")
    assert 0.35 <= at - silenced <= 3.0  # not before silence_s; late only by a loaded machine
    runner.until(is_(Connected))
    runner.until(trade_id(400))
    assert runner.conn.counters.dead == 1 and runner.conn.counters.reconnects == 1
    runner.close()


def test_server_pings_keep_a_quiet_connection_alive() -> None:
    with fake_exchange("binance", {BTC: TRADES[:10]}, live=0, ping_interval_s=0.1) as quiet:
        runner = run(quiet, MiniBinanceWire(silence_s=0.5))
        runner.until(is_(Connected))
        with pytest.raises(AssertionError):
            runner.until(is_(Disconnected), timeout=1.5)
        assert runner.conn.counters.frames == 0 and runner.conn.counters.reconnects == 0
        runner.close()


def test_idle_line_gets_app_pings_and_their_pongs_keep_it_alive() -> None:
    kraken = Market("kraken", "BTC", "USD")
    with fake_exchange("kraken", {kraken: TRADES[:10]}, live=0, heartbeat_s=60) as fake:
        wire = MiniKrakenWire(silence_s=0.6)
        runner = Runner(WireConnection(wire, [kraken], url=fake.ws_url, proxy=None, backoff=FAST))
        runner.until(is_(Connected))
        with pytest.raises(AssertionError):
            runner.until(is_(Disconnected), timeout=2.0)
        (session,) = fake.sessions()
        assert sum('"ping"' in text for text in session.received) >= 3
        runner.close()


def test_server_shutdown_reconnects_at_once(fx: FakeExchange) -> None:
    runner = run(fx, MiniBinanceWire(), backoff=Backoff(initial_s=5.0, max_s=5.0))
    runner.until(trade_id(150))
    fx.server_shutdown()
    at, gone = runner.until(is_(Disconnected))
    assert isinstance(gone, Disconnected) and gone.reason == "server shutdown"
    back_at, _ = runner.until(is_(Connected))
    assert back_at - at < 1.0  # planned: no backoff
    runner.until(trade_id(400))
    runner.close()


def test_max_connection_age_reconnects_proactively(fx: FakeExchange) -> None:
    runner = run(fx, MiniBinanceWire(max_connection_s=0.4))
    _, gone = runner.until(is_(Disconnected))
    assert isinstance(gone, Disconnected) and gone.reason == "max age"
    runner.until(is_(Connected))
    runner.until(trade_id(400))
    runner.close()


def test_garbage_is_counted_and_skipped(fx: FakeExchange) -> None:
    runner = run(fx, MiniBinanceWire())
    runner.until(trade_id(120))
    fx.send_garbage()
    runner.until(trade_id(400))
    assert runner.conn.counters.garbage == 3  # non-JSON, unknown event, binary
    assert "unreadable frame" in runner.conn.counters.last_problem
    assert runner.kinds() == ["Connected"]
    runner.close()


def test_a_wire_that_raises_costs_one_frame_not_the_feed(fx: FakeExchange) -> None:
    class Fragile(MiniBinanceWire):
        def parse(self, frame: str | bytes) -> list[Event]:
            if '"t":130,' in str(frame):
                raise KeyError("boom")
            return super().parse(frame)

    runner = run(fx, Fragile())
    runner.until(trade_id(400))
    assert 130 not in runner.trade_ids() and runner.conn.counters.garbage == 1
    runner.close()


def test_stop_flag_ends_the_loop_within_a_second(fx: FakeExchange) -> None:
    runner = run(fx, MiniBinanceWire(silence_s=30))
    runner.until(trade_id(110))
    assert runner.close() < 1.0
    assert runner.kinds()[0] == "Connected"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Ceiling(random.Random):
    """Full jitter at its ceiling, so the waits show the backoff caps."""

    def uniform(self, a: float, b: float) -> float:
        return b


def test_backoff_grows_against_a_closed_port_and_stops_promptly() -> None:
    wire = MiniBinanceWire()
    backoff = Backoff(initial_s=0.05, max_s=0.4, factor=2.0)
    conn = WireConnection(
        wire, [BTC], url=f"ws://127.0.0.1:{free_port()}", proxy=None, backoff=backoff, rng=Ceiling()
    )
    runner = Runner(conn)
    deadline = time.monotonic() + 5
    while len(wire.urls_at) < 7 and time.monotonic() < deadline:
        time.sleep(0.01)
    gaps = [b - a for a, b in zip(wire.urls_at, wire.urls_at[1:], strict=False)][:6]
    expected = [0.05, 0.1, 0.2, 0.4, 0.4, 0.4]
    for gap, cap in zip(gaps, expected, strict=True):
        assert cap * 0.9 <= gap <= cap + 0.4  # never early; late only by a loaded machine
    assert conn.counters.failed_connects >= 6 and "connect to" in conn.counters.last_problem
    assert runner.close() < 1.0
    assert runner.seen == [] and runner.events.empty()  # never connected: no events


def test_backoff_jitter_stays_under_the_cap() -> None:
    backoff = Backoff(initial_s=0.5, max_s=30.0)
    rng = random.Random(1)
    assert [backoff.cap(n) for n in (1, 2, 3, 7, 8, 20)] == [0.5, 1.0, 2.0, 30.0, 30.0, 30.0]
    delays = [backoff.delay(5, rng) for _ in range(500)]
    assert all(0.0 <= d <= 8.0 for d in delays) and max(delays) > 6.0 and min(delays) < 1.0
    assert backoff.delay(0, rng) == 0.0


def test_stop_during_a_long_backoff_is_prompt() -> None:
    conn = WireConnection(
        MiniBinanceWire(),
        [BTC],
        url=f"ws://127.0.0.1:{free_port()}",
        proxy=None,
        backoff=Backoff(initial_s=30.0, max_s=30.0),
        rng=Ceiling(),
    )
    runner = Runner(conn)
    time.sleep(0.3)
    assert conn.counters.failed_connects == 1
    assert runner.close() < 1.0


def test_batches_keep_order_and_fragmented_or_non_utf8_messages_cost_nothing_or_one_frame() -> None:
    with fake_exchange("binance", {BTC: TRADES[:20]}, live=20, pace_s=None) as quiet:
        conn = WireConnection(MiniBinanceWire(), [BTC], url=quiet.ws_url, proxy=None, backoff=FAST)
        stop = threading.Event()
        batches: queue.Queue[list[StreamEvent]] = queue.Queue()
        thread = threading.Thread(target=lambda: [batches.put(b) for b in conn.batches(stop)], daemon=True)
        thread.start()
        (session,) = quiet.wait_sessions(1)
        quiet.publish(10)
        frame = quiet.dialect.trade_frames(session, BTC, TRADES[10])[0]
        while len(session.sent) < 10:
            time.sleep(0.005)
        session.conn.send([frame[:40], frame[40:]])  # one message in two frames
        with session.conn.protocol_mutex:  # a text frame that is not UTF-8
            session.conn.protocol.send_text(b"\xff\xfe", fin=True)
            session.conn.send_data()
        quiet.publish(9)
        seen: list[StreamEvent] = []
        deadline = time.monotonic() + 5
        while len([e for e in seen if isinstance(e, TradeEvent)]) < 20 and time.monotonic() < deadline:
            batch = batches.get(timeout=5)
            assert batch and isinstance(batch, list)
            seen.extend(batch)
        stop.set()
        thread.join(timeout=5)
        assert not thread.is_alive()
    ids = [e.trade.trade_id for e in seen if isinstance(e, TradeEvent)]
    assert ids == [*range(1, 12), *range(11, 20)]  # the fake then publishes #11 again
    assert isinstance(seen[0], Connected) and conn.counters.garbage == 1 and conn.counters.reconnects == 0


def test_frames_that_waited_while_the_caller_held_a_batch_prove_the_line_alive() -> None:
    """The reader is held (the producer busy with a batch) past the silence period while the
    exchange keeps sending: the frames waiting in the socket count, the line is not dead."""
    with fake_exchange("binance", {BTC: TRADES[:20]}, live=20, pace_s=None) as quiet:
        wire = MiniBinanceWire(silence_s=0.3)
        conn = WireConnection(wire, [BTC], url=quiet.ws_url, proxy=None, backoff=FAST)
        stop = threading.Event()
        batches = conn.batches(stop)
        assert [type(e) for e in next(batches)] == [Connected]
        (session,) = quiet.wait_sessions(1)
        quiet.publish(5)
        while len(session.sent) < 5:
            time.sleep(0.005)
        time.sleep(wire.silence_s * 3)  # holding the batch: nothing reads the socket
        seen: list[StreamEvent] = []
        while len(seen) < 5:
            seen.extend(next(batches))
        assert [e.trade.trade_id for e in seen if isinstance(e, TradeEvent)] == [1, 2, 3, 4, 5]
        assert conn.counters.dead == 0 and conn.counters.reconnects == 0
        stop.set()
        assert [type(e) for e in next(batches)] == [Disconnected]
        batches.close()
