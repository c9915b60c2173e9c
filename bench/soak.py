"""Soak: the whole pipeline at a steady rate for a long time; RSS, latency, errors, lag.

    .venv/bin/python bench/soak.py [--minutes 30] [--rate 2000] [--json PATH]

On its own local stack (temporary state dir, free ports; stopped at the end, also on an
error, Ctrl-C or SIGTERM) it runs, as a user would, two processes of their own:

    cryptoctl produce --source synthetic --rate RATE --symbols ... --duration MINUTES
    cryptoctl aggregate

and, in this process:
- every --every seconds: the RSS of each process (the two above and the three servers)
  and the load average;
- produce -> Redis latency for a sample of ticks (1 in --sample-every of each partition):
  a bare consumer (no group) reads the ticks off the topic for their event times, and a
  Redis subscriber to the candle channel records when each candle update arrives. The
  writer publishes a candle in the same pipeline right after it SETs the candle and the
  latest price, so an update received means the price is visible. A sampled tick is
  visible at the first update of its symbol whose close_ts (the event time of the newest
  tick in it) is >= the tick's event time; latency = that arrival time - event time. The
  synthetic live feed stamps a tick with the wall clock when it is due and sends it at
  once, so event time is produce time (same machine, same clock);
- the producer's and the aggregator's error counters, from their status lines (one every
  5 s on stderr when it is not a terminal) and their --format json summaries at exit,
  and every other line they write on stderr (log lines: warnings, errors);
- the consumer lag (topic end offsets - offsets stored in PostgreSQL) when the producer
  has stopped, and again once drained (or after --drain seconds).

Per minute (of event time, from the start of production): p50/p99 latency, the highest
RSS of each process, the load average, the error counters. A table on stdout, and JSON
with every sample (--json PATH).
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson
import psutil
from benchlib import claimed_partitions, cryptoctl_env, local_stack, machine, percentile

from cryptoctl.settings import Settings

SYMBOLS = ["BTC", "ETH", "SOL", "XRP", "ADA", "DOGE", "DOT", "LTC"]
MIB = 1024 * 1024
_COUNTER = re.compile(r"(?P<name>[a-z][a-z ]*?) (?P<value>\d[\d,]*)(?= |$)")
_REDIS_DOWN = re.compile(r"redis down \((\d+) pending\)")
# What tells each process's status lines from its log lines on stderr.
AGGREGATE_STATUS = " | wm "
PRODUCE_STATUS = " ticks/s · "


@dataclass
class Child:
    """A cryptoctl process: its stderr read line by line (status lines and logs)."""

    name: str
    proc: subprocess.Popen[str]
    status: list[tuple[float, str]] = field(default_factory=list)  # (time, line)
    logs: list[tuple[float, str]] = field(default_factory=list)
    stdout: str = ""

    def read_stderr(self, marker: str) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            line = line.rstrip("\n")
            (self.status if marker in line else self.logs).append((time.time(), line))

    def stop(self, timeout: float = 60.0) -> None:
        """SIGINT (flush, commit, summary), then SIGKILL if it does not exit."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        self.stdout += out or ""

    def summary(self) -> dict[str, Any] | None:
        lines = self.stdout.strip().splitlines()
        return json.loads(lines[-1]) if lines else None


def start(name: str, args: list[str], settings: Settings, marker: str) -> Child:
    proc = subprocess.Popen(
        [sys.executable, "-m", "cryptoctl", *args], env=cryptoctl_env(settings),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    child = Child(name, proc)
    threading.Thread(target=child.read_stderr, args=(marker,), daemon=True).start()
    return child


def counters(line: str) -> dict[str, int]:
    """The counters of a status line ("failed 0 · retries 3", "late 0 | invalid 0")."""
    out: dict[str, int] = {}
    for part in re.split(r" [·|] ", line):
        m = _COUNTER.fullmatch(part.strip())
        if m:
            out[m["name"]] = int(m["value"].replace(",", ""))
    down = _REDIS_DOWN.search(line)
    if down:
        out["redis pending (down)"] = int(down[1])
    return out


class LatencyProbe:
    """Event times of sampled ticks (from the topic) and candle updates (from Redis)."""

    def __init__(self, settings: Settings, partitions: list[int], sample_every: int) -> None:
        from confluent_kafka import Consumer, TopicPartition

        from cryptoctl.cache.client import Keys, redis_client
        from cryptoctl.kafka.clients import consumer_config

        self.sample_every = sample_every
        self.stop = threading.Event()
        self.ticks: list[tuple[str, int]] = []  # (symbol, event ts ms) of sampled ticks
        self.read_ms: list[float] = []  # when this probe read each of them off the topic
        self.read_end: dict[int, int] = {}  # partition -> highest offset read + 1
        self.updates: list[tuple[float, str, int]] = []  # (arrival s, symbol, close_ts ms)
        self._consumer = Consumer(consumer_config(settings, "soak-probe"))
        self._consumer.assign([TopicPartition(settings.topic, p, 0) for p in partitions])
        self._pubsub = redis_client(settings, timeout=5).pubsub()
        self._pubsub.subscribe(Keys(settings.redis_prefix).channel)
        self._threads = [threading.Thread(target=self._read_topic, daemon=True),
                         threading.Thread(target=self._listen, daemon=True)]  # fmt: skip
        for t in self._threads:
            t.start()

    def _read_topic(self) -> None:
        every = self.sample_every
        while not self.stop.is_set():
            for m in self._consumer.consume(1000, 0.01):
                offset, value = m.offset(), m.value()
                if offset is not None:
                    self.read_end[m.partition() or 0] = offset + 1
                if m.error() is None and offset is not None and value and offset % every == 0:
                    d = orjson.loads(value)
                    self.ticks.append((d["symbol"], d["ts"]))
                    self.read_ms.append(time.time() * 1000)
        self._consumer.close()

    def _listen(self) -> None:
        while not self.stop.is_set():
            m = self._pubsub.get_message(timeout=0.2)
            if m and m["type"] == "message":
                t = time.time()
                d = orjson.loads(m["data"])
                self.updates.append((t, d["symbol"], d["close_ts"]))
        self._pubsub.close()

    def close(self) -> None:
        self.stop.set()
        for t in self._threads:
            t.join(5)

    def topic_latencies(self) -> list[tuple[int, float]]:
        """(event ts, ms until this probe read it off the topic): the broker's share."""
        return [(ts, read - ts) for (_, ts), read in zip(self.ticks, self.read_ms, strict=False)]

    def latencies(self) -> tuple[list[tuple[int, float]], int]:
        return visible_latencies(self.ticks, self.updates)


def visible_latencies(ticks: list[tuple[str, int]], updates: list[tuple[float, str, int]],
                      ) -> tuple[list[tuple[int, float]], int]:  # fmt: skip
    """(event ts, latency ms) of every tick seen in Redis, and how many were not.

    ticks: (symbol, event ts ms); updates: (arrival s, symbol, close_ts ms) in arrival
    order. A tick is visible at the first update of its symbol whose close_ts is >= its
    event time (that candle, or a later one, holds it or a newer tick)."""
    arrivals: dict[str, list[float]] = defaultdict(list)
    newest: dict[str, list[int]] = defaultdict(list)  # running max of close_ts: sorted
    for t, sym, close_ts in updates:
        seen = newest[sym]
        arrivals[sym].append(t)
        seen.append(max(close_ts, seen[-1]) if seen else close_ts)
    out, missing = [], 0
    for sym, ts in ticks:
        seen = newest.get(sym, [])
        i = bisect.bisect_left(seen, ts)
        if i == len(seen):
            missing += 1
        else:
            out.append((ts, arrivals[sym][i] * 1000 - ts))
    return out, missing


def partitions_of(settings: Settings) -> list[int]:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    meta = admin.list_topics(settings.topic, timeout=10)
    return sorted(meta.topics[settings.topic].partitions)


def lag(settings: Settings, partitions: list[int], read_end: dict[int, int]) -> dict[str, Any]:
    """Log end - the next offset stored in PostgreSQL, per partition. The log end is the
    broker's end offset, or the probe's highest offset read + 1 where that is higher (the
    local broker's end offset can trail the log by a producer batch)."""
    from confluent_kafka import Consumer, TopicPartition

    from cryptoctl.db.connection import connect
    from cryptoctl.kafka.clients import consumer_config

    consumer = Consumer(consumer_config(settings, "soak-lag"))
    broker_ends = {p: consumer.get_watermark_offsets(TopicPartition(settings.topic, p), timeout=10)[1]
            for p in partitions}  # fmt: skip
    consumer.close()
    ends = {p: max(end, read_end.get(p, 0)) for p, end in broker_ends.items()}
    with connect(settings) as conn:
        rows = conn.execute(
            "SELECT kafka_partition, next_offset FROM processing_metadata WHERE topic = %s",
            (settings.topic,),
        ).fetchall()
    stored = {int(p): int(o) for p, o in rows}
    per = {str(p): ends[p] - stored.get(p, 0) for p in partitions}
    return {"total": sum(per.values()), "per_partition": per, "log_end": sum(ends.values()),
            "broker_end_offsets": sum(broker_ends.values()), "stored": sum(stored.values())}


def server_pids(settings: Settings) -> dict[str, int]:
    from cryptoctl.stack.local import running_records

    return {name: rec.pid for name, rec in running_records(settings).items()}


def rss_mib(pid: int, tree: bool = False) -> float | None:
    """RSS of a process (with tree: and its children, e.g. PostgreSQL's backends; their
    shared buffers are then counted more than once)."""
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)] if tree else [proc]
        return round(sum(p.memory_info().rss for p in procs) / MIB, 1)
    except psutil.Error:
        return None


def versions(settings: Settings) -> dict[str, str]:
    import confluent_kafka
    import psycopg
    import redis

    from cryptoctl.cache.client import redis_client
    from cryptoctl.db.connection import connect
    from cryptoctl.stack.local import running_records

    with connect(settings) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    records = running_records(settings)
    return {
        "confluent_kafka": str(confluent_kafka.__version__), "librdkafka": confluent_kafka.libversion()[0],
        "psycopg": psycopg.__version__, "redis_py": redis.__version__,
        "postgresql": str(row[0]) if row else "?",
        "redis_server": str(redis_client(settings).info("server")["redis_version"]),
        "kafka_broker": records["kafka"].version if "kafka" in records else "?",
    }  # fmt: skip


def cpu_s(pid: int, tree: bool = False) -> float | None:
    """User + system CPU seconds used so far (with tree: of live children too)."""
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)] if tree else [proc]
        return round(sum(sum(p.cpu_times()[:2]) for p in procs), 2)
    except psutil.Error:
        return None


def sample(children: dict[str, Child], servers: dict[str, int]) -> dict[str, Any]:
    pids = {name: c.proc.pid for name, c in children.items()} | servers
    return {
        "t": time.time(), "loadavg": [round(x, 2) for x in os.getloadavg()],
        "rss_mib": {name: rss_mib(pid, tree=name == "postgres") for name, pid in pids.items()},
        "cpu_s": {name: cpu_s(pid, tree=name == "postgres") for name, pid in pids.items()},
    }  # fmt: skip


def run(settings: Settings, args: argparse.Namespace, versions: dict[str, str]) -> dict[str, Any]:
    partitions = partitions_of(settings)
    symbols = args.symbols.split(",")
    agg = start("aggregate", ["aggregate", "--format", "json"], settings, AGGREGATE_STATUS)
    children = {"aggregate": agg}
    try:
        deadline = time.monotonic() + 120
        while claimed_partitions(settings) < len(partitions):  # every partition claimed
            if agg.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the aggregator did not claim its partitions: {agg.logs[-5:]}")
            time.sleep(0.2)
        probe = LatencyProbe(settings, partitions, args.sample_every)
        seconds = int(args.minutes * 60)
        prod = children["produce"] = start("produce", [
            "produce", "--source", "synthetic", "--rate", str(args.rate), "--symbols",
            ",".join(symbols), "--duration", f"{seconds}s", "--format", "json",
        ], settings, PRODUCE_STATUS)  # fmt: skip
        t0 = time.time()
        servers = server_pids(settings)
        samples = []
        while prod.proc.poll() is None:
            samples.append(sample(children, servers))
            done = int((time.time() - t0) // 60)
            print(f"soak: {done}/{args.minutes:g} min, load {samples[-1]['loadavg'][0]}, "
                  f"rss {samples[-1]['rss_mib']}", file=sys.stderr, flush=True)  # fmt: skip
            with contextlib.suppress(subprocess.TimeoutExpired):
                prod.proc.wait(args.every)
        prod.stop()
        lag_stop = lag(settings, partitions, probe.read_end)
        t_stop = time.monotonic()
        drained = lag_stop
        while drained["total"] > 0 and time.monotonic() - t_stop < args.drain:
            time.sleep(1.0)
            drained = lag(settings, partitions, probe.read_end)
        drain_s = round(time.monotonic() - t_stop, 1)
        samples.append(sample(children, servers))
        time.sleep(2.0)  # the last candle updates reach Redis
        probe.close()
        agg.stop()
    finally:
        for child in children.values():
            if child.proc.poll() is None:
                child.stop(timeout=30)
    lat, missing = probe.latencies()
    return {
        "started": time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(t0)),
        "machine": machine(), "versions": versions, "partitions": len(partitions),
        "rate": args.rate, "symbols": symbols, "minutes": args.minutes,
        "sample_every": args.sample_every, "sampled_ticks": len(probe.ticks),
        "sampled_not_seen_in_redis": missing,
        "per_minute": per_minute(t0, lat, probe.topic_latencies(), samples, children),
        "latency_p50_per_10s_ms": per_10s(t0, lat),
        "lag_at_producer_stop": lag_stop, "lag_after_drain": drained, "drain_s": drain_s,
        "producer_summary": prod.summary(), "aggregator_summary": agg.summary(),
        "log_lines": {name: [f"{time.strftime('%H:%M:%S', time.localtime(t))} {line}"
                             for t, line in c.logs[:50]] for name, c in children.items()},
        "samples": samples,
    }  # fmt: skip


def per_10s(t0: float, lat: list[tuple[int, float]]) -> list[float | None]:
    by: dict[int, list[float]] = defaultdict(list)
    for ts, ms in lat:
        by[int((ts / 1000 - t0) // 10)].append(ms)
    last = max(by, default=-1)
    return [round(statistics.median(by[i]), 1) if by.get(i) else None for i in range(last + 1)]


def _by_minute(t0: float, lat: list[tuple[int, float]]) -> dict[int, list[float]]:
    by: dict[int, list[float]] = defaultdict(list)
    for ts, ms in lat:
        by[int((ts / 1000 - t0) // 60)].append(ms)
    return by


def cpu_pct(samples: list[dict[str, Any]], name: str) -> float | None:
    """CPU use of one process between the first and the last sample it was alive in, in %
    of one core."""
    alive = [s for s in samples if s["cpu_s"].get(name) is not None]
    if len(alive) < 2 or alive[-1]["t"] <= alive[0]["t"]:
        return None
    used = alive[-1]["cpu_s"][name] - alive[0]["cpu_s"][name]
    return round(used / (alive[-1]["t"] - alive[0]["t"]) * 100, 1)


def per_minute(t0: float, lat: list[tuple[int, float]], topic_lat: list[tuple[int, float]],
               samples: list[dict[str, Any]], children: dict[str, Child],
               ) -> list[dict[str, Any]]:  # fmt: skip
    by_minute, topic_by_minute = _by_minute(t0, lat), _by_minute(t0, topic_lat)
    rows = []
    for minute in range(int((samples[-1]["t"] - t0) // 60) + 1):
        in_minute = [s for s in samples if int((s["t"] - t0) // 60) == minute]
        values = sorted(by_minute.get(minute, []))
        row: dict[str, Any] = {"minute": minute + 1, "latency_n": len(values)}
        if values:
            row |= {"p50_ms": round(statistics.median(values), 1),
                    "p99_ms": round(percentile(values, 0.99), 1)}  # fmt: skip
        topic = sorted(topic_by_minute.get(minute, []))
        if topic:
            row |= {"topic_p50_ms": round(statistics.median(topic), 1),
                    "topic_p99_ms": round(percentile(topic, 0.99), 1)}  # fmt: skip
        if in_minute:
            names = in_minute[0]["rss_mib"].keys()
            row["rss_mib"] = {n: max((v for s in in_minute if (v := s["rss_mib"][n]) is not None),
                                     default=None) for n in names}  # fmt: skip
            row["load1"] = round(statistics.mean(s["loadavg"][0] for s in in_minute), 2)
            row["cpu_pct"] = {n: cpu_pct(in_minute, n) for n in names}
        end = t0 + (minute + 1) * 60
        for name, child in children.items():
            lines = [line for t, line in child.status if t < end]
            row[f"{name}_counters"] = counters(lines[-1]) if lines else {}
            row[f"{name}_log_lines"] = sum(1 for t, _ in child.logs if end - 60 <= t < end)
        rows.append(row)
    return rows


_ERRORS = {
    "produce": ("failed", "retries", "invalid", "source errors"),
    "aggregate": ("late", "invalid", "fenced", "duplicates", "gaps", "redis pending (down)"),
}


def _cell(value: object) -> object:
    """A figure for the table: '-' where a minute has none (None or missing)."""
    return "-" if value is None else value


def table(result: dict[str, Any], out: IO[str]) -> None:
    rss_names = list(result["per_minute"][0].get("rss_mib", {}))
    head = f"{'min':>4} {'p50 ms':>8} {'p99 ms':>8} {'topic p50':>9} "
    head += " ".join(f"{n[:9]:>9}" for n in rss_names)
    print(f"soak: {result['rate']:g} ticks/s, {len(result['symbols'])} symbols, "
          f"{result['minutes']:g} min, {result['machine']}", file=out)  # fmt: skip
    print("RSS in MiB (highest in the minute); errors = non-zero error counters, cumulative", file=out)
    print(f"{head} {'load1':>6}  errors", file=out)
    for row in result["per_minute"]:
        errors = ", ".join(
            f"{name[:3]} {k} {v:,}" for name, keys in _ERRORS.items()
            for k, v in row.get(f"{name}_counters", {}).items() if k in keys and v
        ) or "-"  # fmt: skip
        rss = row.get("rss_mib", {})
        print(f"{row['minute']:>4} {_cell(row.get('p50_ms')):>8} {_cell(row.get('p99_ms')):>8} "
              f"{_cell(row.get('topic_p50_ms')):>9} "
              + " ".join(f"{_cell(rss.get(n)):>9}" for n in rss_names)
              + f" {_cell(row.get('load1')):>6}  {errors}", file=out)  # fmt: skip
    for key in ("lag_at_producer_stop", "lag_after_drain"):
        print(f"{key.replace('_', ' ')}: {result[key]['total']:,} messages", file=out)
    print(f"drain: {result['drain_s']} s; sampled ticks {result['sampled_ticks']:,}, "
          f"not seen in Redis {result['sampled_not_seen_in_redis']:,}", file=out)  # fmt: skip
    for name in ("producer", "aggregator"):
        print(f"{name} summary: {json.dumps(result[f'{name}_summary'])}", file=out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--rate", type=float, default=2000.0, help="synthetic ticks/s over all symbols")
    ap.add_argument("--symbols", default=",".join(SYMBOLS))
    ap.add_argument("--every", type=float, default=10.0, help="seconds between RSS samples")
    ap.add_argument("--sample-every", type=int, default=20,
                    help="latency of 1 in this many ticks of each partition")  # fmt: skip
    ap.add_argument("--drain", type=float, default=120.0,
                    help="longest wait for the lag to reach zero after the producer stops")  # fmt: skip
    ap.add_argument("--json", type=Path, help="write every figure and sample here")
    args = ap.parse_args()
    with local_stack("bench-soak-") as settings:
        result = run(settings, args, versions(settings))
    result["command"] = " ".join(["bench/soak.py", *sys.argv[1:]])
    if args.json:  # first: a table that cannot be printed loses no figure
        args.json.write_text(json.dumps(result, indent=1))
    table(result, sys.stdout)


if __name__ == "__main__":
    main()
