"""Start-up times of the local stack and of the CLI itself.

    .venv/bin/python bench/bench_up.py [--runs 5]

Measures, each as the median of --runs runs in this one process:
- cold `cryptoctl up`: a fresh state dir (initdb included), all three servers, topics, schema;
- warm `cryptoctl up`: everything already running (the idempotent path);
- `cryptoctl --help` as a subprocess (interpreter start + imports: lazy imports keep it short).
Each run uses its own free ports and state dir, so a running user stack is not touched.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import local_settings

from cryptoctl.stack import local


def one_stack(root: Path) -> tuple[float, float]:
    settings = local_settings(root)
    try:
        t0 = time.perf_counter()
        local.up(settings)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        local.up(settings)
        warm = time.perf_counter() - t0
    finally:
        local.down(settings, purge=True)
    return cold, warm


def help_time() -> float:
    exe = Path(sys.executable).with_name("cryptoctl")
    t0 = time.perf_counter()
    subprocess.run([str(exe), "--help"], check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    colds, warms, helps = [], [], []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="cryptoctl-bench-") as tmp:
            cold, warm = one_stack(Path(tmp) / "home")
        colds.append(cold)
        warms.append(warm)
        helps.append(help_time())
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    for name, values, target in (
        ("cold up", colds, 10.0), ("warm up", warms, 3.0), ("--help", helps, 0.5)
    ):
        print(
            f"{name:8s} median {statistics.median(values):6.2f}s  min {min(values):6.2f}s  "
            f"max {max(values):6.2f}s  target < {target}s  (runs: {len(values)})"
        )


if __name__ == "__main__":
    main()
