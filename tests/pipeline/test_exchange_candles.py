"""The whole pipeline on exchange trades: fake exchange -> `cryptoctl produce` -> Kafka ->
`cryptoctl aggregate` -> PostgreSQL, through stream faults, a producer SIGKILL and an
aggregator SIGKILL, each restarted. The stored candles must equal the reference built
from the exchange's own trade set: OHLC and trade counts exact, sums to 1e-9."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import threading
from datetime import UTC, datetime

import pytest

from cryptoctl.db.connection import connect
from cryptoctl.settings import Settings
from tests.aggregator.procs import committed, finish, start_aggregator, wait_for
from tests.fakes import fake_exchange, reference_candles
from tests.helpers import stack_env
from tests.producer.test_exchange_produce import CRYPTOCTL, publish_steadily, urls
from tests.sources.test_exchange_feed import trade_sets, wait_sent


def stored(settings: Settings, market) -> dict[int, tuple]:
    with connect(settings) as conn:
        rows = conn.execute(
            """SELECT (extract(epoch FROM bucket) * 1000)::bigint, open, high, low, close,
                      volume, trades, vwap
                 FROM price_aggregates_1m WHERE source = %s AND symbol = %s AND quote = %s""",
            (market.source, market.symbol, market.quote),
        ).fetchall()
    return {r[0]: tuple(r[1:]) for r in rows}


def produce(settings: Settings, fx, kind: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [CRYPTOCTL, "produce", "--source", kind, "-s", "BTC", *urls(fx), *args],
        env=stack_env(settings), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


@pytest.mark.parametrize("kind", ["binance", "coinbase", "kraken"])
def test_candles_from_exchange_trades_equal_the_exchanges_through_faults_and_kills(
    settings: Settings, kind: str
) -> None:
    sets = trade_sets(kind, ["BTC"], 900)
    ((market, trades),) = sets.items()
    since = datetime.fromtimestamp(trades[0].ts / 1000, UTC).isoformat()
    stop = threading.Event()
    with fake_exchange(kind, sets, live=700, pace_s=None) as fx:
        publisher = threading.Thread(
            target=publish_steadily, args=(fx, stop), kwargs={"pace_s": 0.01, "while_down": 60},
            daemon=True,
        )  # fmt: skip
        aggregator = start_aggregator(settings, "--flush-interval", "100ms")
        first = produce(settings, fx, kind, "--since", since)
        publisher.start()
        try:
            wait_sent(fx, market, 60, timeout=30)
            fx.faults.drop_next = 15  # a block the stream never sends: filled over REST
            wait_sent(fx, market, 150, timeout=30)
            fx.faults.replay_on_connect = 10  # the exchange re-sends after the reconnect
            fx.cut()  # no close frame
            wait_sent(fx, market, 230, timeout=30)
            wait_for("some candles committed", lambda: committed(settings) > 100, 30)
            aggregator.send_signal(signal.SIGKILL)
            aggregator.wait(10)
            first.send_signal(signal.SIGKILL)
            first.wait(10)
            aggregator = start_aggregator(settings, "--flush-interval", "100ms")
            # resumes after the last trade on the topic
            second = produce(settings, fx, kind, "--format", "json")
            sent_before = len(fx.sent_ids(market))
            wait_for("the live tail published", lambda: not fx.live_remaining, 60)
            wait_for(
                "every trade produced",
                lambda: max(stored(settings, market).values(), default=None) is not None
                and sum(c[5] for c in stored(settings, market).values()) == len(trades),
                60,
            )
        finally:
            stop.set()
            for proc in (first, aggregator):
                if proc.poll() is None:
                    proc.kill()
        assert len(fx.sent_ids(market)) > sent_before + 100  # the restarted one streamed too
        second.send_signal(signal.SIGTERM)
        code, out, err = finish(second, 40)
        assert code == 0, err
        (feed,) = json.loads(out)["feed"]["markets"]
        assert feed["gaps_filled"] >= 1 and feed["gaps_open"] == 0  # published while it was down
    code, _out, err = finish(start_aggregator(settings, "--until-idle", "2s"), 60)
    assert code == 0, err

    want = {c.start_ms: c for c in reference_candles(trades)}
    got = stored(settings, market)
    assert sorted(got) == sorted(want)
    for bucket, (o, h, low, c, volume, n, vwap) in got.items():
        ref = want[bucket]
        assert (o, h, low, c, n) == (ref.open, ref.high, ref.low, ref.close, ref.trades), bucket
        assert math.isclose(volume, ref.volume, rel_tol=1e-9)
        assert math.isclose(vwap, ref.vwap, rel_tol=1e-9)
