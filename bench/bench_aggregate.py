"""Aggregator throughput, produce -> Redis latency and peak memory, side by side.

    .venv/bin/python bench/bench_aggregate.py [--ticks 1000000] [--quix-ticks 300000]

One run, on its own local stack (free ports, temporary state dir):
1. pre-produces --ticks synthetic ticks (10 symbols, 6 partitions, event time in order);
2. a bare confluent-kafka consume loop over them (the ceiling: no decoding at all);
3. the aggregator with --no-store-ticks, then with raw ticks stored (new group and schema
   each time): throughput from its first tick read to the last tick committed in PostgreSQL;
4. a Quix Streams tumbling-window OHLC app on the same topic (first --quix-ticks ticks);
5. latency: ticks produced live at --rate ticks/s by a producer process, aggregated by a
   `cryptoctl aggregate` process with its defaults; for each tick, the time until a candle
   update that includes it arrives on the Redis pub/sub channel (p50/p99). Measured twice
   in the run: on the machine as it is, and with one core kept busy by another process;
6. peak RSS of a `cryptoctl aggregate --no-store-ticks` subprocess for growing tick counts.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
from benchlib import claimed_partitions, cryptoctl_env, local_stack, machine, percentile

from cryptoctl.settings import Settings, load_settings

SYMBOLS = ["BTC", "ETH", "SOL", "ADA", "XRP", "DOGE", "DOT", "LTC", "AVAX", "LINK"]
BASE_TS = 1_704_067_200_000


def fresh(settings: Settings, tag: str, **extra: Any) -> Settings:
    """New group, schema and Redis prefix (the topic is shared unless given)."""
    from cryptoctl.db.connection import apply_schema

    s = replace(settings, group=f"bench-{tag}", db_schema=f"bench_{tag}",
                redis_prefix=f"bench:{tag}:", **extra)
    apply_schema(s)
    return s


def produce(settings: Settings, n: int, *, live_rate: float | None = None,
            sent: dict[tuple[str, int], float] | None = None) -> float:
    """Produce n ticks; live_rate paces them with ts = now and records send times."""
    from confluent_kafka import Producer

    from cryptoctl.kafka.clients import producer_config

    # Live: cryptoctl's producer settings (linger.ms 20), unless told otherwise.
    extra = {"linger.ms": int(os.environ["BENCH_LINGER_MS"])} if "BENCH_LINGER_MS" in os.environ else {}
    p = Producer(producer_config(settings, **extra))
    if live_rate:  # connect and get the idempotent producer id before the clock starts
        p.produce(settings.topic, b"warm-up", b"BTC")
        p.flush(10)
    rng = random.Random(1)
    t0 = time.perf_counter()
    last_ts: dict[str, int] = {}
    for i in range(n):
        sym = SYMBOLS[i % len(SYMBOLS)]
        if live_rate:
            target = t0 + i / live_rate
            while (now := time.perf_counter()) < target:
                time.sleep(min(0.001, target - now))
            ts = max(int(time.time() * 1000), last_ts.get(sym, 0) + 1)  # unique per symbol
            last_ts[sym] = ts
        else:
            ts = BASE_TS + i * 3  # ~1M ticks = 50 minutes of event time
        value = orjson.dumps({"v": 1, "symbol": sym, "quote": "USD",
                              "price": round(100 + rng.random(), 4),
                              "qty": round(rng.random(), 4), "ts": ts, "source": "synthetic",
                              "recv_ts": ts})
        while True:
            try:
                p.produce(settings.topic, value, sym.encode(), timestamp=ts)
                break
            except BufferError:
                p.poll(0.05)
        if sent is not None:
            sent[(sym, ts)] = time.time()
        if i % 1000 == 0:
            p.poll(0)
    p.flush(60)
    return time.perf_counter() - t0


def bare_consume(settings: Settings, n: int) -> float:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    from cryptoctl.kafka.clients import consumer_config

    c = Consumer(consumer_config(settings, "bench-bare"))
    c.assign([TopicPartition(settings.topic, p, OFFSET_BEGINNING) for p in range(6)])
    count, t0 = 0, None
    while count < n:
        msgs = c.consume(10_000, 1.0)
        if msgs and t0 is None:
            t0 = time.perf_counter()
        for m in msgs:
            if m.error() is None:
                m.value()
                count += 1
    elapsed = time.perf_counter() - (t0 or time.perf_counter())
    c.close()
    return n / elapsed


def committed(settings: Settings) -> int:
    from cryptoctl.db.connection import connect

    with connect(settings) as conn:
        row = conn.execute("SELECT coalesce(sum(next_offset), 0) FROM processing_metadata")
        return int(row.fetchone()[0])  # type: ignore[index]


def aggregator_rate(settings: Settings, n: int, store: bool, **options: Any) -> dict[str, float]:
    from cryptoctl.aggregator import Aggregator, AggregatorOptions

    agg = Aggregator(settings, AggregatorOptions(store_ticks=store, write_cache=True, **options))
    stop = threading.Event()
    thread = threading.Thread(target=agg.run, args=(stop,), daemon=True)
    thread.start()
    t_first = None
    while agg.stats().accounted < n:  # every message dealt with
        if t_first is None and agg.stats().ticks > 0:
            t_first = time.perf_counter()
        time.sleep(0.005)
    t_read = time.perf_counter()
    while committed(settings) < n:
        time.sleep(0.01)
    t_done = time.perf_counter()
    stop.set()
    thread.join(60)
    assert t_first is not None
    stats = agg.stats()
    return {"ticks_per_s": n / (t_done - t_first), "read_ticks_per_s": n / (t_read - t_first),
            "flush_p50_ms": stats.flush_latency_ms_p50 or 0.0, "flushes": stats.flushes}


QUIX_VENV = Path(__file__).resolve().parents[1] / ".venv-quix"


def quix_python() -> Path:
    """The interpreter of the Quix comparison's own virtualenv, made on first use."""
    python = QUIX_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(QUIX_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "quixstreams>=3.0"], check=True)
    return python


def quix_rate(settings: Settings, n: int) -> float:
    """Ticks/s of the Quix Streams app (bench/quix_ohlc.py) on the same topic."""
    script = Path(__file__).with_name("quix_ohlc.py")
    done = subprocess.run(
        [str(quix_python()), str(script), settings.kafka_bootstrap, settings.topic, str(n)],
        check=True, capture_output=True, text=True,
    )
    return float(done.stdout.strip().splitlines()[-1])


def _run_live_producer(settings: Settings, rate: float, seconds: float,
                       linger_ms: int | None = None) -> dict[tuple[str, int], float]:
    env = cryptoctl_env(settings)
    if linger_ms is not None:
        env["BENCH_LINGER_MS"] = str(linger_ms)
    out = subprocess.run(
        [sys.executable, __file__, "--live-producer", str(rate), str(int(rate * seconds))],
        env=env, capture_output=True, text=True, check=True,
    ).stdout
    return {(k.split()[0], int(k.split()[1])): t for k, t in json.loads(out).items()}


def _percentiles(lat: list[float], produced: int) -> dict[str, float]:
    lat.sort()
    return {"p50_ms": round(statistics.median(lat), 1),
            "p99_ms": round(percentile(lat, 0.99), 1),
            "measured": len(lat), "produced": produced}


def broker_latency(settings: Settings, rate: float, seconds: float,
                   linger_ms: int | None) -> dict[str, float]:
    """The broker alone: produce -> a bare consumer's receipt (the floor under the
    pipeline's figure), with the given producer linger.ms."""
    from confluent_kafka import Consumer, TopicPartition

    from cryptoctl.kafka.clients import consumer_config

    consumer = Consumer(consumer_config(settings, "unused", **{"fetch.wait.max.ms": 10}))
    consumer.assign([TopicPartition(settings.topic, p, 0) for p in range(6)])
    got: dict[tuple[str, int], float] = {}
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            for m in consumer.consume(10_000, 0.01):
                value = m.value()
                if m.error() is None and value and value != b"warm-up":
                    d = orjson.loads(value)
                    got[(d["symbol"], d["ts"])] = time.time()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    sent = _run_live_producer(settings, rate, seconds, linger_ms)
    time.sleep(1.0)
    stop.set()
    thread.join(5)
    consumer.close()
    return _percentiles([(got[k] - t) * 1000 for k, t in sent.items() if k in got], len(sent))


def _live_producer(args: list[str]) -> None:
    """Subprocess mode: produce live ticks, print {"sym ts": send time} as JSON at the end."""
    rate, n = float(args[0]), int(args[1])
    settings = load_settings(environ=os.environ)
    sent: dict[tuple[str, int], float] = {}
    produce(settings, n, live_rate=rate, sent=sent)
    print(json.dumps({f"{sym} {ts}": t for (sym, ts), t in sent.items()}))


def latency(settings: Settings, rate: float, seconds: float) -> dict[str, float]:
    """p50/p99 from produce to the first Redis candle update that includes the tick.

    As a user runs it: `cryptoctl aggregate` with its defaults and the producer are
    processes of their own; this one only listens on the Redis channel (so no harness
    thread competes with the aggregator for one interpreter lock)."""
    from cryptoctl.cache.client import Keys, redis_client

    agg = subprocess.Popen(
        [sys.executable, "-m", "cryptoctl", "aggregate", "--format", "json"],
        env=cryptoctl_env(settings), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        return _measure(settings, rate, seconds, redis_client, Keys)
    finally:
        agg.terminate()
        agg.communicate(timeout=30)


def _measure(settings: Settings, rate: float, seconds: float, redis_client: Any,
             keys: Any) -> dict[str, float]:
    deadline = time.monotonic() + 60
    while claimed_partitions(settings) < 6:  # every partition assigned and claimed
        assert time.monotonic() < deadline, "the aggregator did not get its partitions"
        time.sleep(0.1)
    pubsub = redis_client(settings, timeout=5).pubsub()
    pubsub.subscribe(keys(settings.redis_prefix).channel)
    updates: list[tuple[float, str, int]] = []
    stop = threading.Event()

    def listen() -> None:
        while not stop.is_set():
            m = pubsub.get_message(timeout=0.1)
            if m and m["type"] == "message":
                d = orjson.loads(m["data"])
                updates.append((time.time(), d["symbol"], d["close_ts"]))

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    sent = _run_live_producer(settings, rate, seconds)
    time.sleep(1.0)
    stop.set()
    listener.join(5)
    lat = []
    by_symbol: dict[str, list[tuple[float, int]]] = {}
    for t, sym, close_ts in updates:
        by_symbol.setdefault(sym, []).append((t, close_ts))
    for (sym, ts), t_sent in sent.items():
        arrivals = [t for t, close_ts in by_symbol.get(sym, []) if close_ts >= ts]
        if arrivals:
            lat.append((min(arrivals) - t_sent) * 1000)
    return _percentiles(lat, len(sent))


def latency_both(settings: Settings, rate: float, seconds: float) -> dict[str, Any]:
    """Latency on the machine as it is, then with one core kept busy by another process."""
    from cryptoctl.kafka.clients import ensure_topics

    out: dict[str, Any] = {}
    for linger in (None, 1):  # the producer's default (20 ms), and a batch per message
        tag = "broker_only" + ("" if linger is None else f"_linger_{linger}ms")
        live = fresh(settings, tag, topic=f"bench-{tag}")
        ensure_topics(live)
        out[tag] = broker_latency(live, rate, seconds, linger)
    for tag, busy in (("idle", False), ("busy_core", True)):
        live = fresh(settings, f"latency_{tag}", topic=f"bench-live-{tag}")
        ensure_topics(live)
        burner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
        try:
            out[tag] = latency(live, rate, seconds)
        finally:
            if burner is not None:
                burner.kill()
                burner.wait()
    return out


def peak_rss(settings: Settings, n: int) -> float:
    """Peak RSS (MiB) of an aggregator process that reads n ticks (fresh topic)."""
    from cryptoctl.kafka.clients import ensure_topics

    s = fresh(settings, f"rss{n}", topic=f"bench-rss-{n}")
    ensure_topics(s)
    produce(s, n)
    env = cryptoctl_env(s)
    # VmHWM, not ru_maxrss: the latter survives exec and would report this process's peak.
    code = ("import sys; from cryptoctl.cli.app import app\n"
            "try:\n    app(sys.argv[1:], standalone_mode=False)\n"
            "finally:\n    hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')]\n"
            "    print(hwm[0].split()[1], file=sys.stderr)")
    out = subprocess.run(
        [sys.executable, "-c", code, "aggregate", "--no-store-ticks", "--until-idle", "2s",
         "--format", "json"], env=env, capture_output=True, text=True, check=True)
    summary = json.loads(out.stdout)
    assert summary["ticks"] == n, summary
    return int(out.stderr.strip().splitlines()[-1]) / 1024


def main() -> None:
    if sys.argv[1:2] == ["--live-producer"]:
        _live_producer(sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ticks", type=int, default=1_000_000)
    ap.add_argument("--quix-ticks", type=int, default=300_000)
    ap.add_argument("--rate", type=float, default=1_000.0)
    ap.add_argument("--latency-seconds", type=float, default=20.0)
    ap.add_argument("--rss-ticks", default="100000,300000,1000000")
    ap.add_argument("--only", choices=["latency", "throughput"],
                    help="Run just one part (development, or an A/B of two checkouts).")
    args = ap.parse_args()

    from cryptoctl.kafka.clients import ensure_topics

    results: dict[str, Any] = {"machine": machine(), "ticks": args.ticks}
    with local_stack("bench-aggregate-", topic="bench-ticks") as base:
        ensure_topics(base)
        if args.only == "throughput":
            produce(base, args.ticks)
            print(json.dumps({
                "bare_consume_ticks_per_s": round(bare_consume(base, args.ticks)),
                "aggregate_no_store": aggregator_rate(fresh(base, "nostore"), args.ticks, False),
                "aggregate_store": aggregator_rate(fresh(base, "store"), args.ticks, True),
            }, indent=2))
            return
        if args.only == "latency":
            print(json.dumps(latency_both(base, args.rate, args.latency_seconds), indent=2))
            return
        results["produce_s"] = round(produce(base, args.ticks), 2)
        results["bare_consume_ticks_per_s"] = round(bare_consume(base, args.ticks))
        results["aggregate_no_store"] = aggregator_rate(fresh(base, "nostore"), args.ticks, False)
        results["aggregate_store"] = aggregator_rate(fresh(base, "store"), args.ticks, True)
        results["quix_ticks_per_s"] = round(quix_rate(base, args.quix_ticks))
        results["latency"] = latency_both(base, args.rate, args.latency_seconds)
        results["peak_rss_mib"] = {n: round(peak_rss(base, int(n)), 1)
                                   for n in args.rss_ticks.split(",")}
        results["max_rss_self_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
