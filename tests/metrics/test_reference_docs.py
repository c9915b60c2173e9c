"""docs/operations.md's metrics reference names every metric the collectors export, with
its type, and no metric they do not."""

from __future__ import annotations

import re
from pathlib import Path

from cryptoctl.metrics.collectors import AggregatorCollector, ProducerCollector

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def reference_rows() -> dict[str, str]:
    """metric name -> type, from the tables of the Metrics reference section."""
    text = DOC.read_text()
    section = text[text.index("## Metrics reference"):text.index("## Alerting on lag")]
    return dict(re.findall(r"^\| `(cryptoctl_\w+)` \| (\w+) \|", section, re.M))


def exported() -> dict[str, str]:
    """As a user writes them: a counter with its ``_total``."""
    out = {}
    for collector in (AggregatorCollector(None), ProducerCollector(None)):
        for family in collector.describe():
            name = family.name + ("_total" if family.type == "counter" else "")
            out[name] = family.type
    return out


def test_every_exported_metric_is_documented_with_its_type() -> None:
    assert reference_rows() == exported()
