"""`run --metrics-port` serves the producer's and the aggregator's metrics on one port."""

from __future__ import annotations

import signal
import subprocess
import sys

from cryptoctl.settings import Settings
from tests.aggregator.procs import finish, wait_for
from tests.conftest import free_port
from tests.helpers import stack_env
from tests.metrics.scrape import by_label, scrape, value


def test_run_serves_both_parts_on_one_port(settings: Settings) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cryptoctl", "run", "--source", "synthetic", "--symbols", "BTC",
         "--rate", "50", "--duration", "60s", "--metrics-port", str(port)],
        env=stack_env(settings), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/metrics"

    def both_counting() -> bool:
        try:
            got = scrape(url)
        except OSError:
            return False  # not listening yet (the stack check comes first)
        return value(got, "cryptoctl_aggregator_ticks_total") > 0 and bool(
            by_label(got, "cryptoctl_producer_ticks_total", "symbol")
        )

    try:
        wait_for("ticks produced and aggregated", both_counting, 90)
        got = scrape(url)
    finally:
        proc.send_signal(signal.SIGINT)
    code, _, err = finish(proc)
    assert code == 0, err
    assert set(by_label(got, "cryptoctl_producer_ticks_total", "symbol")) == {"BTC"}
    assert value(got, "cryptoctl_aggregator_partitions") == settings.partitions
