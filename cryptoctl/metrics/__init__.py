"""Prometheus metrics of the long-running commands (produce, aggregate, run).

:mod:`.server` serves them over HTTP when ``--metrics-port`` (or ``metrics_port``) is set;
:mod:`.collectors` reads the process's own stats objects at scrape time, so a counter is
the summary's figure by construction and the hot path pays nothing; :mod:`.histogram` is
what the hot path feeds (flush and request durations). Only the server and collectors
import prometheus_client, and only when metrics are served.
"""
