"""The local broker's (Tansu, memory engine) CPU as its log grows: by producer batch size
(linger) and consumer fetch wait, and how many fetches a consumer makes by fetch.min.bytes.

    .venv/bin/python bench/bench_broker.py [--seconds 50] [--rate 2000]

On its own local stack: a producer of --rate messages/s (8 keys over 6 partitions, acks=all,
idempotence, lz4) and one consumer reading everything from the start. Per case, the
broker's CPU (% of one core) every 10 s. Then, with batches of 100 ms, the consumer's
fetch requests per second (librdkafka statistics) with fetch.min.bytes 1 and 1 MB.
Every client here is configured explicitly: cryptoctl's own tuning is not involved.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from typing import Any

import psutil
from benchlib import local_stack, machine

PAYLOAD = (b'{"symbol":"BTC","price":65000.12,"ts":1796293411705,"source":"synthetic",'
           b'"quote":"USD","qty":0.2}')


def cpu_percent(proc: psutil.Process, seconds: float) -> float:
    a = proc.cpu_times()
    time.sleep(seconds)
    b = proc.cpu_times()
    return round((b.user + b.system - a.user - a.system) / seconds * 100, 1)


def new_topic(boot: str, name: str) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": boot})
    config = {"cleanup.policy": "delete", "retention.ms": "-1"}
    for f in admin.create_topics([NewTopic(name, 6, 1, config=config)]).values():
        f.result()


def producing(boot: str, topic: str, linger_ms: int, rate: float,
              stop: threading.Event) -> threading.Thread:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": boot, "linger.ms": linger_ms, "acks": "all",
                         "enable.idempotence": True, "compression.type": "lz4"})

    def run() -> None:
        i, every = 0, 0.01
        per_wake = max(1, int(rate * every))
        while not stop.is_set():
            for _ in range(per_wake):
                producer.produce(topic, PAYLOAD, key=str(i % 8).encode())
                i += 1
            producer.poll(0)
            time.sleep(every)
        producer.flush(10)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def consuming(boot: str, topic: str, conf: dict[str, Any], stop: threading.Event,
              fetches: list[int]) -> threading.Thread:
    from confluent_kafka import Consumer, TopicPartition

    def stats(raw: str) -> None:
        data = json.loads(raw)
        fetches.append(sum(b["req"].get("Fetch", 0) for b in data["brokers"].values()))

    consumer = Consumer({"bootstrap.servers": boot, "group.id": "bench-broker",
                         "enable.auto.commit": False, "statistics.interval.ms": 5000,
                         "stats_cb": stats} | conf)
    consumer.assign([TopicPartition(topic, p, 0) for p in range(6)])

    def run() -> None:
        while not stop.is_set():
            consumer.poll(0.2)
        consumer.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=50, help="length of each CPU case")
    ap.add_argument("--rate", type=float, default=2000.0, help="messages/s produced")
    args = ap.parse_args()
    out: dict[str, Any] = {"machine": machine(), "rate": args.rate, "cpu": {}, "fetches": {}}
    with local_stack("bench-broker") as s:
        boot = s.kafka_bootstrap
        broker = next(p for p in psutil.process_iter(["name"]) if p.info["name"] == "tansu")
        cases = [("linger 20 ms, fetch wait 10 ms", 20, 10),
                 ("linger 200 ms, fetch wait 10 ms", 200, 10),
                 ("linger 100 ms, fetch wait 100 ms", 100, 100)]
        for n, (name, linger, wait) in enumerate(cases):
            topic, stop = f"cpu-{n}", threading.Event()
            new_topic(boot, topic)
            threads = [producing(boot, topic, linger, args.rate, stop),
                       consuming(boot, topic, {"fetch.wait.max.ms": wait}, stop, [])]
            time.sleep(3)
            out["cpu"][name] = [cpu_percent(broker, 10) for _ in range(args.seconds // 10)]
            print(f"{name}: broker CPU % every 10 s {out['cpu'][name]}", flush=True)
            stop.set()
            for t in threads:
                t.join(15)
        topic, stop = "fetches", threading.Event()
        new_topic(boot, topic)
        producer = producing(boot, topic, 100, args.rate, stop)
        for min_bytes in (1, 1_000_000):
            counts: list[int] = []
            done = threading.Event()
            consumer = consuming(boot, topic, {"fetch.wait.max.ms": 100,
                                               "fetch.min.bytes": min_bytes}, done, counts)
            time.sleep(26)
            done.set()
            consumer.join(15)
            per_s = (counts[-1] - counts[1]) / (5 * (len(counts) - 2)) if len(counts) > 2 else None
            out["fetches"][str(min_bytes)] = per_s
            print(f"fetch.min.bytes {min_bytes}: {per_s} fetch requests/s", flush=True)
        stop.set()
        producer.join(15)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
