"""prometheus_client is imported only when metrics are served: the pipeline's modules and
the CLI load without it (`serving` with no port does not import it either)."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import sys
import cryptoctl.aggregator.core, cryptoctl.producer.loop, cryptoctl.sources.coingecko
import cryptoctl.exchanges.rest, cryptoctl.pipeline.runner, cryptoctl.cli.app
from cryptoctl.metrics.server import serving
from cryptoctl.settings import Settings
with serving(Settings()) as server:
    assert server is None
print("before", "prometheus_client" in sys.modules)
with serving(Settings(metrics_port=int(sys.argv[1]))) as server:
    assert server is not None
print("after", "prometheus_client" in sys.modules)
"""


def test_prometheus_client_is_loaded_only_to_serve() -> None:
    from tests.conftest import free_port

    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(free_port())], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["before", "False", "after", "True"]
