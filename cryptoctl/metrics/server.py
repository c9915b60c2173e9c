"""The metrics endpoint: prometheus_client's HTTP server on a registry of its own."""

from __future__ import annotations

import contextlib
import errno
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cryptoctl.errors import MetricsPortUnavailable
from cryptoctl.settings import Settings

if TYPE_CHECKING:
    from cryptoctl.aggregator import Aggregator
    from cryptoctl.producer import ProducerRun


@dataclass
class MetricsServer:
    host: str
    port: int
    _server: Any
    _thread: threading.Thread

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5.0)


def start_metrics_server(
    host: str, port: int, *, aggregator: Aggregator | None = None,
    producer: ProducerRun | None = None,
) -> MetricsServer:  # fmt: skip
    """Serve the given parts' metrics on ``host:port`` (port 0: any free one) from a daemon
    thread; a port that cannot be had is a MetricsPortUnavailable."""
    from prometheus_client import CollectorRegistry, start_http_server

    from cryptoctl.metrics.collectors import AggregatorCollector, ProducerCollector

    registry = CollectorRegistry(auto_describe=True)
    if aggregator is not None:
        registry.register(AggregatorCollector(aggregator))
    if producer is not None:
        registry.register(ProducerCollector(producer))
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        in_use = exc.errno == errno.EADDRINUSE
        detail = "the port is in use" if in_use else (exc.strerror or str(exc)).lower()
        raise MetricsPortUnavailable(host, port, detail, in_use=in_use) from None
    return MetricsServer(host, server.server_address[1], server, thread)


@contextlib.contextmanager
def serving(
    settings: Settings, *, aggregator: Aggregator | None = None, producer: ProducerRun | None = None
) -> Iterator[MetricsServer | None]:
    """Metrics served while the block runs, when ``settings.metrics_port`` is set; else
    nothing (and prometheus_client is not even imported)."""
    if settings.metrics_port is None:
        yield None
        return
    server = start_metrics_server(
        settings.metrics_host, settings.metrics_port, aggregator=aggregator, producer=producer
    )
    try:
        yield server
    finally:
        server.close()
