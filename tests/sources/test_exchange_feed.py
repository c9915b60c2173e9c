"""`produce --source binance|coinbase|kraken` end to end, in-process: a fake exchange
(REST history + live tail, scripted faults) -> ExchangeSource -> ProducerRun -> the real
broker -> the topic read back: exactly the fake's trades from the start point, in
trade-id order, each once, or a gap marker where REST cannot fill."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import orjson
import pytest

from cryptoctl.errors import ExchangeBanned, UnknownMarket
from cryptoctl.exchanges.trade import Market, Trade, parse_gap
from cryptoctl.producer import ProducerOptions, ProducerRun, ProducerSummary, SourceFailed
from cryptoctl.settings import Settings
from cryptoctl.sources.exchange import ExchangeSource
from cryptoctl.sources.spec import SourceKind, SourceSpec, build_source
from tests.fakes import FakeExchange, fake_exchange, generate_trades
from tests.helpers import consume_all

QUOTE = {"binance": "USDT", "coinbase": "USD", "kraken": "USD"}


def trade_sets(kind: str, symbols: Sequence[str], count: int) -> dict[Market, list[Trade]]:
    return {
        Market(kind, symbol, QUOTE[kind]): generate_trades(
            11 + i, count, first_id=1_000 * (i + 1), price=100.0 * (i + 1), idle_every=0
        )
        for i, symbol in enumerate(symbols)
    }


def source_for(settings: Settings, kind: str, fx: FakeExchange, **spec: Any) -> ExchangeSource:
    built = build_source(
        settings, SourceSpec(SourceKind(kind), ws_url=fx.ws_url, rest_url=fx.rest_url, **spec)
    )
    assert isinstance(built, ExchangeSource)
    return built


class Running:
    """A ProducerRun in a thread, with its source at hand."""

    def __init__(self, settings: Settings, source: ExchangeSource, **options: Any) -> None:
        self.source = source
        self.run = ProducerRun(settings, source, ProducerOptions(**options))
        self.stop = threading.Event()
        self.summary: ProducerSummary | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        try:
            self.summary = self.run.run(self.stop)
        except BaseException as exc:
            self.error = exc

    def last_ids(self) -> dict[str, int | None]:
        return {m.market: m.last_trade_id for m in self.source.feed_stats().markets}

    def wait_for(self, done: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while not done():
            assert self.error is None, self.error
            assert self.thread.is_alive(), "the producer stopped"
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {self.last_ids()}"
            time.sleep(0.01)


@contextmanager
def running(settings: Settings, source: ExchangeSource, **options: Any) -> Iterator[Running]:
    r = Running(settings, source, **options)
    r.thread.start()
    try:
        yield r
    finally:
        r.stop.set()
        r.thread.join(timeout=40)
    assert not r.thread.is_alive()


def wait_sent(fx: FakeExchange, market: Market, n: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while len(fx.sent_ids(market)) < n:
        assert time.monotonic() < deadline, f"the fake sent only {len(fx.sent_ids(market))}"
        time.sleep(0.005)


def topic_contents(settings: Settings, n: int) -> tuple[dict[Market, list[dict[str, Any]]], list[Any]]:
    """(the trade ticks per market in topic order, the gap markers) of the first n messages."""
    messages = consume_all(settings, n=n, timeout=20)
    ticks: dict[Market, list[dict[str, Any]]] = {}
    gaps = []
    for msg in messages:
        obj = orjson.loads(msg.value())
        gap = parse_gap(obj)
        if gap is not None:
            assert msg.key() == gap.market.symbol.encode()
            gaps.append(gap)
            continue
        assert msg.key() == obj["symbol"].encode()
        assert msg.timestamp()[1] == obj["ts"]
        ticks.setdefault(Market(obj["source"], obj["symbol"], obj["quote"]), []).append(obj)
    return ticks, gaps


def assert_exactly(ticks: list[dict[str, Any]], expected: Sequence[Trade]) -> None:
    """The ticks are these trades, in id order, each once, with their fields."""
    assert [t["trade_id"] for t in ticks] == [t.trade_id for t in expected]
    for tick, trade in zip(ticks, expected, strict=True):
        assert (tick["ts"], tick["price"], tick["qty"], tick["side"]) == (
            trade.ts, trade.price, trade.qty, trade.side
        ), tick
        assert tick["recv_ts"] >= tick["ts"]


def since_index(trades: Sequence[Trade], near: int) -> int:
    """An index at or after ``near`` whose trade is the first of its millisecond."""
    i = near
    while trades[i - 1].ts == trades[i].ts:
        i += 1
    return i


@pytest.mark.parametrize("kind", ["binance", "coinbase", "kraken"])
def test_since_history_then_live_through_a_dropped_block_a_cut_and_garbage(
    settings: Settings, kind: str
) -> None:
    sets = trade_sets(kind, ["BTC", "ETH"], 700)
    first = sets[next(iter(sets))]
    k = since_index(first, 150)
    since = first[k].ts  # a trade exactly at T is included; the one before is older
    expected = {m: [t for t in ts if t.ts >= since] for m, ts in sets.items()}
    btc = next(iter(sets))
    with fake_exchange(kind, sets, live=300, pace_s=0.004) as fx:
        iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(since // 1000)) + f".{since % 1000:03d}Z"
        source = source_for(settings, kind, fx, symbols=("BTC", "ETH"), since=iso)
        with running(settings, source, duration_s=60) as r:
            wait_sent(fx, btc, 40)
            fx.send_garbage()
            fx.faults.drop_next = 15  # on the stream only: REST has them
            wait_sent(fx, btc, 120)
            fx.faults.replay_on_connect = 10  # re-sent after the reconnect: duplicates
            fx.cut()  # no close frame
            r.wait_for(
                lambda: all(r.last_ids()[str(m)] == ts[-1].trade_id for m, ts in sets.items()),
                what="the last trade of every market",
            )
            status = r.run.stats()
        assert r.summary is not None
    feed = r.summary.feed
    assert feed is not None
    assert feed.unreadable >= 2 and feed.reconnects >= 1
    by_market = {m.market: m for m in feed.markets}
    assert all(m.gaps_open == 0 and m.reconnects >= 1 for m in feed.markets)
    assert sum(m.gaps_filled for m in feed.markets) >= 1
    assert by_market[str(btc)].history_trades > 0
    assert status.feed is not None and len(status_line_of(status)) <= 80
    total = sum(len(ts) for ts in expected.values())
    assert r.summary.delivered == r.summary.produced == total and r.summary.markers == 0
    ticks, gaps = topic_contents(settings, total)
    assert gaps == []
    for market, trades in expected.items():
        assert_exactly(ticks[market], trades)


def status_line_of(stats: Any) -> str:
    from cryptoctl.render.produce import status_line

    return status_line(stats)


def test_fresh_start_with_the_first_live_trade_and_an_unfillable_gap_marker(settings: Settings) -> None:
    sets = trade_sets("binance", ["BTC"], 500)
    (market, trades), = sets.items()
    with fake_exchange("binance", sets, live=300, pace_s=0.003) as fx:
        source = source_for(settings, "binance", fx, symbols=("BTC",))
        with running(settings, source, duration_s=60) as r:
            wait_sent(fx, market, 50)
            with fx.lock:  # the next 20 trades: neither streamed nor kept by REST
                nxt = len(fx.published[market])
                lost = trades[nxt : nxt + 20]
                fx.faults.forget(market, lost[0].trade_id, lost[-1].trade_id)
                fx.faults.drop_next = 20
            r.wait_for(lambda: r.last_ids()[str(market)] == trades[-1].trade_id, what="the last trade")
        assert r.summary is not None
    start = fx.sent_ids(market)[0]  # the first live trade: where a fresh feed starts
    expected = [t for t in trades if t.trade_id >= start and t not in lost]
    ticks, gaps = topic_contents(settings, len(expected) + 1)
    assert_exactly(ticks[market], expected)
    before = trades[trades.index(lost[0]) - 1]
    after = trades[trades.index(lost[-1]) + 1]
    assert [(g.market, g.first_id, g.last_id, g.after_ts, g.before_ts) for g in gaps] == [
        (market, lost[0].trade_id, lost[-1].trade_id, before.ts, after.ts)
    ]
    assert "REST history" in gaps[0].reason
    (stats,) = r.summary.feed.markets if r.summary.feed else ()
    assert stats.gaps_open == 1 and r.summary.markers == 1
    assert stats.open_gaps[0]["first_id"] == lost[0].trade_id


def test_resumes_after_the_last_trade_already_on_the_topic(settings: Settings) -> None:
    sets = trade_sets("coinbase", ["BTC"], 400)
    (market, trades), = sets.items()
    with fake_exchange("coinbase", sets, live=250, pace_s=0.003) as fx:
        with running(settings, source_for(settings, "coinbase", fx, symbols=("BTC",)), count=60) as r:
            r.thread.join(timeout=20)
        first_run = r.summary
        assert first_run is not None and first_run.stopped_by == "count"
        time.sleep(0.2)  # while nobody listens the exchange goes on: the restart fills them
        source = source_for(settings, "coinbase", fx, symbols=("BTC",))
        with running(settings, source, duration_s=60) as r2:
            r2.wait_for(lambda: r2.last_ids()[str(market)] == trades[-1].trade_id, what="the last trade")
    # Coinbase's last_match (the newest trade at subscribe time) starts a fresh feed
    first_id = fx.sent_ids(market)[0] - 1
    assert source.resumed[market][0] == first_id + 59
    expected = [t for t in trades if t.trade_id >= first_id]
    ticks, gaps = topic_contents(settings, len(expected))
    assert gaps == []
    assert_exactly(ticks[market], expected)
    summary = r2.summary
    assert summary is not None and summary.feed is not None
    assert summary.feed.markets[0].gaps_filled >= 1


def test_a_ban_stops_the_feed_with_the_ban_error(settings: Settings) -> None:
    sets = trade_sets("binance", ["BTC"], 400)
    (market, _), = sets.items()
    with fake_exchange("binance", sets, live=300, pace_s=0.003) as fx:
        source = source_for(settings, "binance", fx, symbols=("BTC",))
        with running(settings, source, duration_s=30) as r:
            wait_sent(fx, market, 30)
            fx.faults.rest_ban = -1
            fx.faults.drop_next = 5  # the fill asks REST, which answers 418
            r.thread.join(timeout=20)
        assert isinstance(r.error, SourceFailed), r.error
        assert isinstance(r.error.cause, ExchangeBanned)
        assert r.error.exit_code == 3
        assert "binance banned this IP address" in r.error.message
        assert r.error.summary.stopped_by == "source error"
        assert r.error.summary.delivered == r.error.summary.produced > 0
        assert fx.requests["/api/v3/historicalTrades"] == 1  # a 418 is never retried


@pytest.mark.parametrize(
    ("kind", "quote", "spelling"),
    [("binance", "USDX", "BTCUSDX"), ("coinbase", "USDX", "BTC-USDX"), ("kraken", "USDX", "XBTUSDX")],
)
def test_an_unknown_market_is_a_usage_error_naming_the_spelling(
    settings: Settings, kind: str, quote: str, spelling: str
) -> None:
    sets = trade_sets(kind, ["BTC"], 10)
    with fake_exchange(kind, sets, live=0) as fx, pytest.raises(UnknownMarket) as info:
        source_for(settings, kind, fx, symbols=("BTC",), quote=quote)
    assert info.value.exit_code == 2
    assert str(info.value).startswith(f"{kind} has no market BTC/{quote} (tried {spelling})")
