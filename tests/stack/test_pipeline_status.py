"""`cryptoctl status`, the pipeline part: health words by rule (property-tested against a
brute-force reference), the rendering at 80 and 120 columns, and on the real local stack a
healthy, a lagging, a stalled (SIGSTOP) and an unowned group, `--watch` in a pty, exit codes.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from cryptoctl.errors import ExitCode
from cryptoctl.render.stack import pipeline_parts
from cryptoctl.settings import Settings
from cryptoctl.stack.pipeline import (
    HEALTH_ORDER,
    GroupStatus,
    HealthRules,
    PartitionStatus,
    PipelineStatus,
    partition_health,
    partition_status,
    worst,
)
from tests.aggregator.data import make_ticks
from tests.aggregator.procs import committed, finish, start_aggregator, wait_for
from tests.conftest import free_port
from tests.helpers import produce_ticks, stack_env
from tests.watch.pty_terminal import PtyCommand

# --- the rules, without a stack -------------------------------------------------------------


def reference_health(lag: int | None, held: bool | None, since_ms: int, rules: HealthRules) -> str:
    """Every word whose condition holds, then the first by precedence (the docs' table)."""
    holds = {
        "stalled": lag is not None and lag > 0 and since_ms >= rules.stalled_after_ms,
        "unowned": held is False,
        "unknown": lag is None,
        "lagging": lag is not None and lag > rules.lagging_over,
        "ok": True,
    }
    return next(word for word in ("stalled", "unowned", "unknown", "lagging", "ok") if holds[word])


@given(
    lag=st.one_of(st.none(), st.integers(0, 5000)),
    held=st.sampled_from([True, False, None]),
    since_ms=st.integers(0, 600_000),
    lagging_over=st.integers(0, 3000),
    stalled_after_ms=st.integers(1, 300_000),
)
def test_health_is_the_reference(lag, held, since_ms, lagging_over, stalled_after_ms) -> None:
    rules = HealthRules(lagging_over, stalled_after_ms)
    assert partition_health(lag, held, since_ms, rules) == reference_health(lag, held, since_ms, rules)


@given(st.lists(st.sampled_from(HEALTH_ORDER), min_size=1))
def test_a_group_is_as_healthy_as_its_worst_partition(words: list[Any]) -> None:
    assert worst(words) == min(words, key=HEALTH_ORDER.index)
    assert (worst(words) == "ok") == all(w == "ok" for w in words)


@given(
    next_offset=st.integers(0, 10_000),
    end=st.one_of(st.none(), st.integers(0, 10_000)),
    stored=st.sampled_from([None, "cluster-a", "cluster-b"]),
    current=st.sampled_from([None, "cluster-a"]),
    since_ms=st.integers(0, 120_000),
)
def test_lag_counts_from_the_stored_offset_of_this_broker_log(
    next_offset, end, stored, current, since_ms
) -> None:
    cp = ("g", "t", 3, next_offset, None, "h:1:x", stored, since_ms, 0)
    p = partition_status(cp, end, True, current, HealthRules())
    earlier = stored is not None and current is not None and stored != current
    position = 0 if earlier else next_offset  # a new log is read from its start
    assert p.earlier_broker == earlier and p.next_offset == next_offset
    assert p.lag == (None if end is None else max(0, end - position))
    assert p.health == partition_health(p.lag, True, since_ms, HealthRules())


def _sample(approximate: bool) -> PipelineStatus:
    parts = [
        PartitionStatus(p, "vm:1234:abcdef", None, 100 * p, 100 * p + lag, lag,
                        "2024-01-01T00:07:00.006Z" if p else None, 1500, health)
        for p, lag, health in [(0, 0, "ok"), (1, 5, "ok"), (11, 2500, "lagging")]
    ]  # fmt: skip
    return PipelineStatus(
        [GroupStatus("g-one", "crypto-prices", "g-one", "stable", parts)], approximate=approximate
    )


@pytest.mark.parametrize("columns", [80, 120])
@pytest.mark.parametrize("approximate", [True, False])
def test_rendering_fits_and_marks_approximate_counts(columns: int, approximate: bool) -> None:
    console = Console(width=columns, record=True, soft_wrap=True)
    for part in pipeline_parts(_sample(approximate), columns):
        console.print(part)
    text = console.export_text()
    lines = text.splitlines()
    assert max(len(line.rstrip()) for line in lines) <= columns
    assert "pipeline g-one on crypto-prices: lagging, lag " + ("≈" if approximate else "") + "2,505" in text
    row = next(line for line in lines if line.lstrip().startswith("11 "))
    assert row.split()[-1] == "lagging" and ("≈2,500" in row) == approximate
    assert ("Tansu" in text) == approximate
    assert ("vm:1234:abcdef" in text) == (columns >= 100)  # the owner column is wide-only


# --- on the local stack ----------------------------------------------------------------------


def status_json(cli, *args: str) -> tuple[int, dict[str, Any], str]:
    result = cli("status", "--format", "json", *args)
    assert result.exit_code in (0, ExitCode.PIPELINE_STALLED), result.stderr
    return result.exit_code, json.loads(result.stdout), result.stderr


def our_group(data: dict[str, Any], settings: Settings) -> dict[str, Any]:
    groups = [g for g in data["pipeline"]["groups"] if g["group"] == settings.group]
    assert len(groups) == 1, data["pipeline"]
    return groups[0]


def healths(group: dict[str, Any]) -> dict[int, str]:
    return {p["partition"]: p["health"] for p in group["partitions"]}


def test_status_of_a_healthy_then_lagging_then_stalled_then_unowned_group(cli, settings: Settings) -> None:
    first = make_ticks(300, seed=3)
    produce_ticks(settings, first)
    proc = start_aggregator(settings, "--flush-interval", "100ms")
    stopped = False
    try:
        wait_for("the first ticks committed", lambda: committed(settings) >= len(first), 90)
        code, data, err = status_json(cli)
        group = our_group(data, settings)
        assert code == 0 and err == ""
        assert data["pipeline"]["approximate"] is True and "Tansu" in data["pipeline"]["note"]
        assert sorted(healths(group)) == list(range(6))
        assert set(healths(group).values()) == {"ok"}, group
        assert sum(p["next_offset"] for p in group["partitions"]) == len(first)
        assert all(p["owner"] and p["owner"].split(":")[1] == str(proc.pid) for p in group["partitions"])
        assert group["state"] == "stable" and group["kafka_group"] == settings.group

        proc.send_signal(signal.SIGSTOP)
        stopped = True
        # Separate produce calls: separate batches, so the local broker's end offsets move.
        for seed in (4, 5, 6):
            produce_ticks(settings, make_ticks(60, seed=seed))
        code, data, _ = status_json(cli, "--lagging-over", "0", "--stalled-after", "1h")
        group = our_group(data, settings)
        waiting = {p["partition"] for p in group["partitions"] if p["lag"] > 0}
        assert code == 0 and waiting, group
        assert {p: h for p, h in healths(group).items() if p in waiting} == dict.fromkeys(waiting, "lagging")
        assert group["health"] == "lagging" and group["lag"] == sum(p["lag"] for p in group["partitions"])

        def stalled() -> bool:
            return status_json(cli, "--stalled-after", "1s")[0] == ExitCode.PIPELINE_STALLED

        wait_for("the stopped aggregator's partitions to stall", stalled, 60)
        result = cli("status", "--format", "json", "--stalled-after", "1s")
        group = our_group(json.loads(result.stdout), settings)
        assert {p for p, h in healths(group).items() if h == "stalled"} >= waiting
        assert group["health"] == "stalled"
        line = result.stderr.strip()
        assert line.startswith(
            f"error: pipeline stalled, no commit for 1.0s with messages waiting: "
            f"{settings.group} on {settings.topic}: partition"
        ), line
        assert len(line.splitlines()) == 1

        proc.send_signal(signal.SIGCONT)
        stopped = False
        wait_for("the aggregator to catch up", lambda: status_json(cli, "--stalled-after", "1s")[0] == 0, 90)
    finally:
        if stopped:
            proc.send_signal(signal.SIGCONT)
        proc.send_signal(signal.SIGTERM)
        returncode, _out, err = finish(proc)
    assert returncode == 0, err
    # Nobody consumes now: the Kafka group is empty, every partition unowned.
    code, data, _ = status_json(cli)
    group = our_group(data, settings)
    assert code == 0 and group["state"] == "empty"
    assert set(healths(group).values()) == {"unowned"}


def aggregate_once(settings: Settings) -> None:
    """A few ticks aggregated by `aggregate --until-idle`: a checkpoint, and the group empty."""
    produce_ticks(settings, make_ticks(120, seed=8))
    proc = start_aggregator(settings, "--until-idle", "1s")
    returncode, _out, err = finish(proc, timeout=120)
    assert returncode == 0, err


def test_watch_in_a_terminal_at_80_and_120_columns(settings: Settings) -> None:
    aggregate_once(settings)
    for cols in (80, 120):
        term = PtyCommand(["status", "--watch", "--every", "1s"], stack_env(settings), cols=cols, rows=150)
        try:
            screen = term.wait_for(lambda text: text.count(f"pipeline {settings.group}") >= 2)
            lines = screen.splitlines()
            assert max(len(line.rstrip()) for line in lines) <= cols
            rows = [line.split() for line in lines if line.split()[:1] in [[str(p)] for p in range(6)]]
            assert {int(r[0]) for r in rows} == set(range(6))
            assert all(r[-1] == "unowned" for r in rows)
            assert ("owner" in screen) == (cols >= 100)
            assert term.interrupt() == 0
        finally:
            term.close()


def watch_json(env: dict[str, str], count: int) -> tuple[subprocess.CompletedProcess[str], list[Any]]:
    result = subprocess.run(
        [sys.executable, "-m", "cryptoctl", "status", "--watch", "--every", "100ms", "--count",
         str(count), "--format", "json"],
        env=env, capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    decoder, text, docs = json.JSONDecoder(), result.stdout.strip(), []
    while text:
        doc, end = decoder.raw_decode(text)
        docs.append(doc)
        text = text[end:].lstrip()
    assert "\x1b[" not in result.stdout
    return result, docs


def test_watch_off_a_terminal_repeats_the_report_and_exits_as_the_last(settings: Settings) -> None:
    result, docs = watch_json(stack_env(settings), 3)
    assert result.returncode == 0, result.stderr
    assert len(docs) == 3 and all(d["all_up"] for d in docs)
    down = stack_env(settings) | {"CRYPTOCTL_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    result, docs = watch_json(down, 2)
    assert result.returncode == ExitCode.SERVICE_UNAVAILABLE, result.stderr
    assert len(docs) == 2 and not any(d["all_up"] for d in docs)
    assert result.stderr.strip().splitlines()[-1].startswith("error: Redis is not reachable")
