"""The producer's metrics after a known run equal its summary: ticks per market, delivery,
and for an exchange feed the reconnects, gaps (filled, open) and REST request latency."""

from __future__ import annotations

import threading

from pytest_httpserver import HTTPServer
from werkzeug import Response

from cryptoctl.metrics.server import MetricsServer, start_metrics_server
from cryptoctl.producer import ProducerOptions, ProducerRun
from cryptoctl.render.produce import summary_json
from cryptoctl.settings import Settings
from cryptoctl.sources.coingecko import CoinGeckoConfig, CoinGeckoSource
from cryptoctl.sources.spec import SourceKind, SourceSpec, build_source
from tests.fakes import fake_exchange
from tests.metrics.scrape import Samples, by_label, scrape, value
from tests.producer.test_coingecko_produce import IDS, ok
from tests.sources.test_exchange_feed import running, source_for, trade_sets, wait_sent


def market_ticks(got: Samples) -> dict[str, float]:
    return {
        f"{dict(k)['source']} {dict(k)['symbol']}/{dict(k)['quote']}": v
        for (name, k), v in got.items() if name == "cryptoctl_producer_ticks_total"
    }  # fmt: skip


def test_synthetic_ticks_per_market_equal_the_summary(settings: Settings) -> None:
    source = build_source(settings, SourceSpec(SourceKind.synthetic, symbols=("BTC", "ETH", "SOL"),
                                               rate=0.0, seed=5))  # fmt: skip
    run = ProducerRun(settings, source, ProducerOptions(count=2_500))
    server = start_metrics_server("127.0.0.1", 0, producer=run)
    try:
        summary = summary_json(run.run(threading.Event()))
        got = scrape(server.url)
    finally:
        server.close()
    assert summary["delivered"] == summary["produced"] == 2_500
    assert market_ticks(got) == summary["market_ticks"]
    assert set(summary["market_ticks"]) == {"synthetic BTC/USD", "synthetic ETH/USD", "synthetic SOL/USD"}
    assert sum(summary["market_ticks"].values()) == 2_500
    assert value(got, "cryptoctl_producer_delivered_total", source="synthetic") == 2_500
    assert value(got, "cryptoctl_producer_delivery_failures_total", source="synthetic") == 0
    assert by_label(got, "cryptoctl_producer_errors_total", "kind") == {"request": 0, "invalid": 0}
    assert value(got, "cryptoctl_producer_pending", source="synthetic") == 0
    # A synthetic market makes no requests, and is no feed.
    assert value(got, "cryptoctl_producer_request_seconds_count", source="synthetic") == 0
    assert not by_label(got, "cryptoctl_producer_feed_reconnects_total", "symbol")


def test_an_exchange_feed_reconnects_and_gaps_equal_the_summary(settings: Settings) -> None:
    """A block lost on the stream (filled over REST), a block REST no longer has (an open
    gap), a cut connection (a reconnect)."""
    sets = trade_sets("binance", ["BTC", "ETH"], 400)
    btc, eth = sets
    trades = sets[btc]
    with fake_exchange("binance", sets, live=300, pace_s=0.003) as fx:
        source = source_for(settings, "binance", fx, symbols=("BTC", "ETH"))
        with running(settings, source, duration_s=60) as r:
            server: MetricsServer = start_metrics_server("127.0.0.1", 0, producer=r.run)
            try:
                wait_sent(fx, btc, 40)
                fx.faults.drop_next, fx.faults.drop_market = 10, btc  # REST has them: filled
                wait_sent(fx, btc, 100)
                fx.cut()  # mid-stream: the trades after it show what the reconnect missed
                wait_sent(fx, btc, 150)
                with fx.lock:  # the next 20 of BTC: neither streamed nor kept by REST
                    nxt = len(fx.published[btc])
                    lost = trades[nxt : nxt + 20]
                    fx.faults.forget(btc, lost[0].trade_id, lost[-1].trade_id)
                    fx.faults.drop_next = 20
                r.wait_for(lambda: all(r.last_ids()[str(m)] == ts[-1].trade_id
                                       for m, ts in sets.items()), what="every last trade")  # fmt: skip
                r.stop.set()
                r.thread.join(40)
                got = scrape(server.url)
            finally:
                server.close()
    assert r.summary is not None and r.summary.feed is not None
    summary = summary_json(r.summary)
    markets = {m["market"]: m for m in summary["feed"]["markets"]}
    assert markets[str(btc)]["gaps_open"] == 1 and markets[str(btc)]["gaps_filled"] >= 1
    assert all(m["reconnects"] >= 1 for m in markets.values())
    assert market_ticks(got) == summary["market_ticks"] == {k: m["trades"] for k, m in markets.items()}
    for attr, name in (("reconnects", "feed_reconnects_total"), ("gaps_filled", "feed_gaps_filled_total"),
                       ("gaps_open", "feed_gaps_open")):  # fmt: skip
        scraped = by_label(got, f"cryptoctl_producer_{name}", "symbol")
        assert scraped == {m.symbol: markets[str(m)][attr] for m in (btc, eth)}, name
    requests = value(got, "cryptoctl_producer_request_seconds_count", source="binance")
    assert requests == source._history.rest.attempts > 0  # every REST request timed
    assert value(got, "cryptoctl_producer_markers_total", source="binance") == summary["markers"] == 1


def test_coingecko_requests_are_timed_failed_ones_too(httpserver: HTTPServer) -> None:
    answers = [ok, lambda: Response("busy", 503), ok]
    httpserver.expect_request("/api/v3/simple/price").respond_with_handler(
        lambda _request: answers.pop(0)()
    )
    source = CoinGeckoSource(CoinGeckoConfig(
        IDS, api_url=httpserver.url_for("/api/v3"), backoff_initial_s=0.01, backoff_max_s=0.02,
    ))  # fmt: skip
    stop = threading.Event()
    assert len(source.poll(stop)) == 2
    assert source.poll(stop) == []  # the 503 retried, then unchanged quotes
    snap = source.counters.requests.snapshot()
    assert snap.count == 3 and source.counters.retries == 1
    assert snap.sum > 0 and snap.buckets[-1] == (float("inf"), 3)
