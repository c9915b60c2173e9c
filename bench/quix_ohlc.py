"""The comparison app of bench_aggregate.py: a Quix Streams tumbling-window OHLC.

Runs in its own virtualenv (bench_aggregate.py makes `.venv-quix` on first use): Quix
Streams pins confluent-kafka < 2.13, whose librdkafka can crash in a client that outlives a
local broker restart, so cryptoctl itself requires a newer one.

    .venv-quix/bin/python bench/quix_ohlc.py BOOTSTRAP TOPIC N    # prints ticks/s
"""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import timedelta
from typing import Any


def quix_rate(bootstrap: str, topic_name: str, n: int) -> float:
    from quixstreams import Application

    app = Application(
        broker_address=bootstrap, consumer_group="bench-quix", auto_offset_reset="earliest",
        state_dir=tempfile.mkdtemp(prefix="quix-state-"), use_changelog_topics=False,
        auto_create_topics=False,
    )
    sdf = app.dataframe(app.topic(topic_name, value_deserializer="json"))

    def init(v: dict[str, Any]) -> dict[str, Any]:
        p = v["price"]
        return {"open": p, "high": p, "low": p, "close": p, "volume": v["qty"] or 0.0,
                "trades": 1}

    def reducer(acc: dict[str, Any], v: dict[str, Any]) -> dict[str, Any]:
        p = v["price"]
        acc["high"], acc["low"], acc["close"] = max(acc["high"], p), min(acc["low"], p), p
        acc["volume"] += v["qty"] or 0.0
        acc["trades"] += 1
        return acc

    seen = {"n": 0, "t0": 0.0, "t1": 0.0}

    def count(v: Any) -> Any:
        if seen["n"] == 0:
            seen["t0"] = time.perf_counter()
        seen["n"] += 1
        if seen["n"] >= n:
            seen["t1"] = time.perf_counter()
            app.stop()
        return v

    sdf = sdf.update(count)
    sdf.tumbling_window(timedelta(minutes=1)).reduce(reducer, init).current()
    app.run()
    return n / (seen["t1"] - seen["t0"])


if __name__ == "__main__":
    print(quix_rate(sys.argv[1], sys.argv[2], int(sys.argv[3])))
