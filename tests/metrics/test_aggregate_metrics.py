"""`aggregate`'s metrics after a known run equal its own summary: in-process (scraped after
the run, the numbers final), and as processes of one group, each on its own port."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from typing import Any

import orjson
import psutil

from cryptoctl.aggregator import Aggregator
from cryptoctl.aggregator.stats import INVALID_CLASSES
from cryptoctl.metrics.server import start_metrics_server
from cryptoctl.render.aggregate import summary
from cryptoctl.settings import Settings
from tests.aggregator.data import expected, make_ticks
from tests.aggregator.procs import finish, start_aggregator, wait_for
from tests.conftest import free_port
from tests.helpers import consume_all, produce_ticks
from tests.metrics.scrape import by_label, scrape, value

# What goes to the dead-letter topic, one class each: (key, value) -> class
BAD = [
    ((b"BTC", b"{not json"), "malformed"),
    ((None, None), "malformed"),
    ((b"BTC", orjson.dumps({"v": 1, "symbol": "BTC", "price": -1, "ts": 1704067200000,
                            "source": "x"})), "invalid"),
    ((b"ETH", orjson.dumps({"v": 1, "symbol": "BTC", "price": 1.0, "ts": 1704067200000,
                            "source": "x"})), "key"),
]  # fmt: skip


def known_run(settings: Settings) -> dict[str, Any]:
    ticks = make_ticks(2000, seed=3, late_every=89, trades=True)
    produce_ticks(settings, ticks[:1000])
    produce_ticks(settings, [raw for raw, _ in BAD])
    produce_ticks(settings, ticks[1000:])
    messages = consume_all(settings, n=len(ticks) + len(BAD))
    want = expected(messages, 5_000, 60_000)
    assert want["late"] > 0 and want["invalid"] == len(BAD)
    keys = {t.symbol.encode() for t in ticks}
    want["with_ticks"] = {str(m.partition()) for m in messages if m.key() in keys}
    return want


def test_metrics_after_a_known_run_equal_the_summary(settings: Settings) -> None:
    """Scraped once while it runs, read to the end (lag, watermarks, partitions), and once
    after it stopped (the counters, final: they must be the summary's)."""
    want = known_run(settings)
    aggregator = Aggregator(settings)
    stop, result = threading.Event(), []
    worker = threading.Thread(target=lambda: result.append(aggregator.run(stop)), daemon=True)
    server = start_metrics_server("127.0.0.1", 0, aggregator=aggregator)
    try:
        worker.start()

        def read_to_the_end() -> bool:
            got = scrape(server.url)
            lag = by_label(got, "cryptoctl_consumer_lag_messages", "partition")
            return value(got, "cryptoctl_aggregator_ticks_total") == want["ticks"] and lag == {
                str(p): 0 for p in range(settings.partitions)
            }

        wait_for("every partition read to its end", read_to_the_end, 60)
        running = scrape(server.url)
        stop.set()
        worker.join(60)
        final = scrape(server.url)
    finally:
        stop.set()
        server.close()
    assert value(running, "cryptoctl_aggregator_partitions") == settings.partitions
    wm_lag = by_label(running, "cryptoctl_aggregator_watermark_lag_seconds", "partition")
    assert set(wm_lag) == want["with_ticks"]  # a watermark where there were ticks
    assert all(v > 86_400 for v in wm_lag.values())  # old data, far behind the wall clock
    (stats,) = result
    s = summary(stats)
    assert s["ticks"] == want["ticks"] and s["late"] == want["late"]
    assert value(final, "cryptoctl_aggregator_ticks_total") == s["ticks"]
    assert value(final, "cryptoctl_aggregator_late_ticks_total") == s["late"]
    assert value(final, "cryptoctl_aggregator_alerts_fired_total") == s["alerts_fired"]
    assert value(final, "cryptoctl_aggregator_candles_written_total") == s["candles"] > 0
    assert value(final, "cryptoctl_aggregator_candles_final_total") == s["candles_final"]
    assert value(final, "cryptoctl_aggregator_raw_ticks_written_total") == s["raw_ticks"]
    assert value(final, "cryptoctl_aggregator_duplicates_total") == s["duplicates"] > 0
    invalid = by_label(final, "cryptoctl_aggregator_invalid_total", "reason")
    by_class = {c: sum(1 for _, k in BAD if k == c) for c in INVALID_CLASSES}
    assert invalid == s["invalid_by"] == by_class
    assert sum(invalid.values()) == s["invalid"] == len(BAD)
    assert value(final, "cryptoctl_aggregator_flush_seconds_count") == s["flushes"] > 0
    assert value(final, "cryptoctl_aggregator_flush_seconds_bucket", le="+Inf") == s["flushes"]
    assert value(final, "cryptoctl_aggregator_flush_seconds_sum") > 0
    assert value(final, "cryptoctl_aggregator_partitions") == 0  # stopped: owns none
    for name in ("postgres_errors", "redis_errors", "kafka_errors", "fenced"):
        assert value(final, f"cryptoctl_aggregator_{name}_total") == 0


def listening_ports(pid: int) -> set[int]:
    return {c.laddr.port for c in psutil.Process(pid).net_connections("inet") if c.status == "LISTEN"}


def test_two_aggregates_each_serve_their_own_port(settings: Settings) -> None:
    """One process told by flag, one by environment variable. Each one's scrape equals its
    own summary; together they saw every tick."""
    want = known_run(settings)
    ports = [free_port(), free_port()]
    procs = [
        start_aggregator(settings, "--metrics-port", str(ports[0]), "--lateness", "1h"),
        start_aggregator(settings, "--lateness", "1h", env={"CRYPTOCTL_METRICS_PORT": str(ports[1])}),
    ]
    try:
        urls = [f"http://127.0.0.1:{p}/metrics" for p in ports]
        wait_for("both metrics servers", lambda: all(
            p in listening_ports(pr.pid) for p, pr in zip(ports, procs, strict=True)), 60)
        # --lateness 1h: the ticks the reference counts late (at 60 s) are applied here.
        every = want["ticks"] + want["late"]
        wait_for("every tick read", lambda: total(urls, "ticks") == every, 90)
        wait_for("the last flush", lambda: settled(urls), 30)
        scraped = [scrape(u) for u in urls]
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGINT)
    summaries = []
    for proc in procs:
        code, out, err = finish(proc)
        assert code == 0, err
        summaries.append(json.loads(out))
    for got, s in zip(scraped, summaries, strict=True):
        assert value(got, "cryptoctl_aggregator_ticks_total") == s["ticks"]
        assert value(got, "cryptoctl_aggregator_late_ticks_total") == s["late"]
        assert value(got, "cryptoctl_aggregator_candles_written_total") == s["candles"]
        assert value(got, "cryptoctl_aggregator_flush_seconds_count") == s["flushes"]
        assert by_label(got, "cryptoctl_aggregator_invalid_total", "reason") == s["invalid_by"]
    assert sum(s["ticks"] for s in summaries) == every
    assert sum(s["invalid"] for s in summaries) == len(BAD)


def test_no_metrics_unless_asked(settings: Settings) -> None:
    """Without --metrics-port (or its variable) an aggregate listens on no port at all."""
    from cryptoctl.settings import host_port

    _, kafka_port = host_port(settings.kafka_bootstrap, 9092)
    proc = start_aggregator(settings)
    try:
        wait_for("a connection to the broker", lambda: any(
            c.raddr and c.raddr.port == kafka_port
            for c in psutil.Process(proc.pid).net_connections("inet")), 60)
        assert listening_ports(proc.pid) == set()
    finally:
        proc.send_signal(signal.SIGINT)
    assert finish(proc)[0] == 0


def total(urls: list[str], what: str) -> float:
    return sum(value(scrape(u), f"cryptoctl_aggregator_{what}_total") for u in urls)


def settled(urls: list[str]) -> bool:
    """Two scrapes a moment apart agree on every counter of both processes: nothing left
    to write (the lateness of an hour keeps the idle watermark from closing candles)."""
    first = [scrape(u) for u in urls]
    time.sleep(1.0)
    second = [scrape(u) for u in urls]
    return all(
        {k: v for k, v in a.items() if k[0].endswith("_total")}
        == {k: v for k, v in b.items() if k[0].endswith("_total")}
        for a, b in zip(first, second, strict=True)
    )


def test_a_port_in_use_is_one_line_and_exit_2(cli: Any) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("aggregate", "--metrics-port", str(port), "--until-idle", "1s")
    assert result.exit_code == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"127.0.0.1:{port}" in lines[0] and "in use" in lines[0]
    assert "--metrics-port" in lines[0]


def test_an_address_not_of_this_machine_is_one_line_and_exit_2(cli: Any) -> None:
    result = cli("aggregate", "--metrics-port", str(free_port()), "--metrics-host", "192.0.2.1")
    assert result.exit_code == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "192.0.2.1" in lines[0] and "--metrics-host" in lines[0]
