"""The flush bookkeeping of the aggregator, without a broker."""

from __future__ import annotations

import json

import pytest

from cryptoctl.aggregator.core import Aggregator, PartitionState
from cryptoctl.tick import Tick
from cryptoctl.windows import PartitionWindows
from tests.aggregator.data import make_ticks
from tests.helpers import produce_ticks


class FailingSink:
    def commit(self, flushes, cluster_id):
        raise ConnectionError("PostgreSQL went away for good")


def test_a_failed_commit_forgets_the_partitions(settings):
    agg = Aggregator(settings)
    windows = PartitionWindows(5_000, 60_000)
    windows.add("BTC", 1_763_000_000_000, 100.0, 1.0)
    agg._states[0] = PartitionState(1, windows, 42, 0.0, committed_offset=0)
    agg._states[0].raw.append(
        Tick(symbol="BTC", price=100.0, ts=1_763_000_000_000, source="t",
             recv_ts=1_763_000_000_000, qty=1.0)
    )
    agg._states[0].raw_offsets.append(41)
    agg._sink = FailingSink()  # type: ignore[assignment]

    with pytest.raises(ConnectionError):
        agg._flush()

    # Nothing left that a flush on revoke could commit without the ticks taken above.
    assert agg._states == {}
    agg._flush()  # and a later flush has nothing to write


def test_an_idle_aggregator_does_not_write(settings, cli):
    produce_ticks(settings, make_ticks(50, seed=5))

    result = cli("aggregate", "--until-idle", "3s", "--format", "json")

    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["ticks"] == 50
    # One flush per batch read, not one every 40 ms of the 3 s spent idle (about 75).
    assert summary["flushes"] < 20, summary


def test_the_idle_rule_waits_for_a_partition_read_to_its_end(settings):
    """A partition whose backlog is unread is behind, not idle: its watermark stays where
    its ticks put it, so the backlog is not made late (seen in a soak on a slow broker)."""
    agg = Aggregator(settings)
    for p in (0, 1):
        windows = PartitionWindows(5_000, 60_000)
        windows.add("BTC", 1_763_000_000_000, 100.0, 1.0)
        agg._states[p] = PartitionState(1, windows, 42, 0.0, committed_offset=0)
    agg._end_offsets = {0: 42, 1: 500}  # 0 is read to its end, 1 has 458 messages unread
    before = {p: ps.windows.watermark for p, ps in agg._states.items()}

    agg._advance_idle(600.0)  # ten minutes without a tick

    assert agg._states[0].windows.watermark == before[0] + 600_000
    assert agg._states[1].windows.watermark == before[1]
    # The consumer's position is past the end's last offsets (transaction markers take
    # offsets but are never delivered): read to its end, idle.
    agg._positions = {1: 500}
    agg._advance_idle(600.0)
    assert agg._states[1].windows.watermark == before[1] + 600_000
    agg._positions, agg._end_offsets = {}, {}  # end unknown: the idle rule as before
    agg._advance_idle(1200.0)
    assert agg._states[1].windows.watermark == before[1] + 1_200_000
