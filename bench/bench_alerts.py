"""Alert rules' cost to the aggregator: feature absent, no rules, 100 rules over 10 symbols.

    .venv/bin/python bench/bench_alerts.py [--ticks 300000] [--rounds 3] [--process-ticks 200000]

Two measurements, each running the three variants side by side, interleaved, --rounds
times (the median is reported; the machine is shared and noisy):

1. hot path: ``Aggregator._process`` plus the flush-side collection (``_collect``: rule
   states taken, change windows pruned and encoded as the sink stores them) over
   in-memory messages, every 10,000 ticks: ns per tick. No broker, no database.
2. end to end on its own local stack (bench_aggregate.py's set-up): ticks pre-produced
   (10 symbols, 6 partitions), then the aggregator from its first tick read to the last
   committed in PostgreSQL, raw ticks stored; a fresh group and schema per run.

Variants: ``absent`` (``AggregatorOptions(alerts=False)``: the rule engine is not started,
the code path of before alerts), ``no-rules`` (the engine running, no rule),
``100-mixed`` (RULES_PER_SYMBOL below for each of 10 symbols: price levels a market may or
may not reach, two repeat rules near the price, change rules of 1 % in 10 minutes and 2 %
in 1 minute) and ``100-levels`` (the same, the two change rules replaced by two levels).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from bench_aggregate import (
    SYMBOLS,
    aggregator_rate,
    fresh,
    produce,
)
from bench_process import messages
from benchlib import free_port

from cryptoctl.alerts.rules import Rule, RuleStates
from cryptoctl.settings import Settings, load_settings

# (condition, threshold, window_ms, repeat); bench prices are 100..101, uniformly.
RULES_PER_SYMBOL = [
    ("above", 101.5, None, False), ("above", 105.0, None, False), ("above", 120.0, None, True),
    ("below", 99.5, None, False), ("below", 95.0, None, False), ("below", 80.0, None, True),
    ("above", 100.9995, None, True), ("below", 100.0005, None, True),
    ("change", 1.0, 600_000, True), ("change", 2.0, 60_000, True),
]
# The same with the two change rules replaced by two more price levels.
LEVELS_PER_SYMBOL = [*RULES_PER_SYMBOL[:8], ("above", 110.0, None, False),
                     ("below", 90.0, None, False)]
VARIANTS = ("absent", "no-rules", "100-levels", "100-mixed")


def platform_line() -> str:
    import platform

    import confluent_kafka
    import psycopg

    return (f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}"
            f" {platform.release()}, Python {platform.python_version()}, psycopg"
            f" {psycopg.__version__}, confluent-kafka {confluent_kafka.__version__},"
            f" librdkafka {confluent_kafka.libversion()[0]}, orjson {orjson.__version__}")


def rules(variant: str) -> list[Rule]:
    if variant == "no-rules":
        return []
    per_symbol = LEVELS_PER_SYMBOL if variant == "100-levels" else RULES_PER_SYMBOL
    return [Rule(i * 100 + j, sym, c, t, window_ms=w, repeat=r)
            for i, sym in enumerate(SYMBOLS) for j, (c, t, w, r) in enumerate(per_symbol)]


class FixedRules:
    """A RuleWatcher that never reloads: the rules the loop reads."""

    def __init__(self, rules: list[Rule]) -> None:
        from cryptoctl.alerts.engine import by_symbol

        self.current = by_symbol(rules)
        self.version = 1

    def close(self) -> None:
        pass


def process_ns(msgs: list[Any], variant: str) -> tuple[float, int]:
    """ns per tick of _process + _collect over the messages, and the events fired."""
    from cryptoctl.aggregator.core import Aggregator, AggregatorOptions, PartitionState
    from cryptoctl.windows import PartitionWindows

    agg = Aggregator(load_settings(environ={}), AggregatorOptions(store_ticks=True))
    agg._states[0] = PartitionState(1, PartitionWindows(5_000, 60_000), None, 0.0)
    if variant != "absent":
        agg._rules = FixedRules(rules(variant))  # type: ignore[assignment]
        # As a claim makes it: raw ticks stored, so windows are not (they are read back).
        agg._states[0].alerts = RuleStates(store_windows=False)
    fired = 0
    t0 = time.perf_counter()
    for i in range(0, len(msgs), 10_000):
        agg._process(msgs[i : i + 10_000], 0.0)
        for f in agg._collect()[0]:
            if f.alerts is not None:
                fired += len(f.alerts.events)
                for *_, window in f.alerts.states:  # what the sink encodes
                    orjson.dumps(window)
    return (time.perf_counter() - t0) / len(msgs) * 1e9, fired


def add_rules(settings: Settings, variant: str) -> None:
    from cryptoctl.db.connection import connect

    with connect(settings) as conn:
        for r in rules(variant):
            conn.execute(
                "INSERT INTO price_alerts (symbol, condition, threshold, window_ms, repeat)"
                " VALUES (%s, %s, %s, %s, %s)", (r.symbol, r.condition, r.threshold,
                                                 r.window_ms, r.repeat))


def events(settings: Settings) -> int:
    from cryptoctl.db.connection import connect

    with connect(settings) as conn:
        return int(conn.execute("SELECT count(*) FROM alert_events").fetchone()[0])  # type: ignore[index]


def end_to_end(base: Settings, n: int, variant: str, run: int) -> dict[str, Any]:
    s = fresh(base, f"{variant.replace('-', '_')}_{run}")
    add_rules(s, variant)
    result = aggregator_rate(s, n, True, alerts=variant != "absent")
    return {"ticks_per_s": result["ticks_per_s"], "events": events(s)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ticks", type=int, default=300_000)
    ap.add_argument("--process-ticks", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    out: dict[str, Any] = {"machine": platform_line(), "ticks": args.ticks,
                           "process_ticks": args.process_ticks, "rounds": args.rounds,
                           "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                           "load_average_at_start": os.getloadavg()}

    msgs = messages(args.process_ticks, symbols=SYMBOLS)
    runs: dict[str, list[float]] = {v: [] for v in VARIANTS}
    fired = {}
    for _ in range(args.rounds):
        for v in VARIANTS:
            ns, fired[v] = process_ns(msgs, v)
            runs[v].append(ns)
    out["hot_path_ns_per_tick"] = {v: round(statistics.median(r)) for v, r in runs.items()}
    out["hot_path_events"] = {v: fired[v] for v in VARIANTS[2:]}

    from cryptoctl.kafka.clients import ensure_topics
    from cryptoctl.stack import local

    home = Path(tempfile.mkdtemp(prefix="bench-alerts-"))
    base = load_settings({
        "home": home, "kafka_bootstrap": f"127.0.0.1:{free_port()}",
        "database_url": f"postgresql://cryptoctl:cryptoctl@127.0.0.1:{free_port()}/cryptoctl",
        "redis_url": f"redis://127.0.0.1:{free_port()}/0", "topic": "bench-alerts",
    }, environ={})
    local.up(base)
    try:
        ensure_topics(base)
        produce(base, args.ticks)
        e2e: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
        for run in range(args.rounds):
            for v in VARIANTS:
                e2e[v].append(end_to_end(base, args.ticks, v, run))
        out["end_to_end_ticks_per_s"] = {
            v: round(statistics.median(r["ticks_per_s"] for r in rs)) for v, rs in e2e.items()}
        out["end_to_end_all_runs"] = {v: [round(r["ticks_per_s"]) for r in rs]
                                      for v, rs in e2e.items()}
        out["end_to_end_events"] = {v: e2e[v][0]["events"] for v in VARIANTS[2:]}
    finally:
        local.down(base, purge=True)
    absent = out["hot_path_ns_per_tick"]["absent"]
    out["hot_path_vs_absent"] = {v: f"{(ns / absent - 1) * 100:+.1f} %"
                                 for v, ns in out["hot_path_ns_per_tick"].items()}
    e = out["end_to_end_ticks_per_s"]
    out["end_to_end_vs_absent"] = {v: f"{(r / e['absent'] - 1) * 100:+.1f} %" for v, r in e.items()}
    out["load_average_at_end"] = os.getloadavg()
    out["ended"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
