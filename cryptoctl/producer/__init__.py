"""The produce loop: a source's ticks onto Kafka, with counters readable from any thread.

``run_producer(settings, source, ProducerOptions(...), stop)`` runs until the source ends,
``count``/``duration`` is reached or ``stop`` is set, flushes, and returns a
:class:`ProducerSummary`. To watch it from another thread (the `run` dashboard), build a
:class:`ProducerRun`, call ``run(stop)`` in a thread and ``stats()`` from anywhere.
"""

from cryptoctl.producer.loop import (
    ProducerOptions,
    ProducerRun,
    ProducerStats,
    ProducerSummary,
    SourceFailed,
    check_topic,
    run_producer,
)

__all__ = [
    "ProducerOptions",
    "ProducerRun",
    "ProducerStats",
    "ProducerSummary",
    "SourceFailed",
    "check_topic",
    "run_producer",
]
