"""`cryptoctl produce` stopped by a signal, as a real process: Ctrl-C / SIGTERM flush what
is in flight and print the summary; a second Ctrl-C during the flush aborts (exit 130);
on a terminal the live status line is drawn and cleared."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import orjson
import pytest

from cryptoctl.settings import Settings
from tests.helpers import consume_all, stack_env
from tests.watch.pty_terminal import PtyCommand

CRYPTOCTL = str(Path(sys.executable).with_name("cryptoctl"))
PRODUCE = ("produce", "--source", "synthetic", "--symbols", "BTC,ETH", "--rate", "200")


def start(settings: Settings, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [CRYPTOCTL, *PRODUCE, *args],
        env=stack_env(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_ticks_on_topic(settings: Settings, n: int = 20) -> None:
    """Some ticks have been delivered: the producer is past start-up and in its loop."""
    got = consume_all(settings, n=n, timeout=20)
    assert len(got) >= n, f"only {len(got)} ticks reached {settings.topic}"


def stop_with(proc: subprocess.Popen[str], sig: int) -> tuple[str, str]:
    proc.send_signal(sig)
    try:
        return proc.communicate(timeout=40)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"did not exit after signal {sig}; stderr:\n{err}") from None


def table_value(report: str, name: str) -> str:
    match = re.search(rf"^{name}\s+(.+?)\s*$", report, re.MULTILINE)
    assert match, f"no {name!r} row in:\n{report}"
    return match.group(1)


def test_ctrl_c_flushes_everything_and_prints_the_table_on_stderr(settings: Settings) -> None:
    proc = start(settings)
    wait_for_ticks_on_topic(settings)
    out, err = stop_with(proc, signal.SIGINT)
    assert proc.returncode == 0, err
    assert out == ""  # the table summary is a report: stderr
    assert "stopping: flushing" in err and "(Ctrl-C again to abort)" in err
    assert table_value(err, "stopped by") == "stop"
    delivered = int(table_value(err, "delivered").replace(",", ""))
    assert int(table_value(err, "produced").replace(",", "")) == delivered
    assert (table_value(err, "failed"), table_value(err, "undelivered")) == ("0", "0")
    # Every tick counted as delivered is on the topic: nothing in flight was lost.
    assert len(consume_all(settings, timeout=20)) == delivered


def test_sigterm_flushes_everything_and_prints_the_json_summary(settings: Settings) -> None:
    proc = start(settings, "--format", "json")
    wait_for_ticks_on_topic(settings)
    out, err = stop_with(proc, signal.SIGTERM)
    assert proc.returncode == 0, err
    summary = orjson.loads(out)
    assert summary["stopped_by"] == "stop"
    assert summary["produced"] == summary["delivered"] > 0
    assert (summary["failed"], summary["undelivered"]) == (0, 0)
    assert len(consume_all(settings, timeout=20)) == summary["delivered"]


# --- a second Ctrl-C while the flush waits on a broker that stopped answering ---------


@pytest.fixture
def frozen_broker(tmp_path: Path, settings: Settings) -> Iterator[tuple[Settings, int]]:
    """A private broker (so the session's one is never paused), and its PID for SIGSTOP."""
    from cryptoctl.kafka.clients import ensure_topics
    from cryptoctl.stack.local import running_records, start_service, stop_service
    from tests.conftest import free_port

    own = replace(settings, home=tmp_path / "stack", kafka_bootstrap=f"127.0.0.1:{free_port()}")
    start_service(own, "kafka")
    pid = running_records(own)["kafka"].pid
    try:
        ensure_topics(own)
        yield own, pid
    finally:
        os.kill(pid, signal.SIGCONT)
        stop_service(own, "kafka")


def test_second_ctrl_c_during_the_flush_aborts_with_130(frozen_broker: tuple[Settings, int]) -> None:
    own, broker_pid = frozen_broker
    proc = start(own)
    wait_for_ticks_on_topic(own)
    os.kill(broker_pid, signal.SIGSTOP)  # from now on nothing is acknowledged
    time.sleep(0.5)  # ticks pile up in flight
    proc.send_signal(signal.SIGINT)
    time.sleep(1.5)  # the source has stopped; the flush waits on the broker (up to 30 s)
    assert proc.poll() is None, "the flush should still be waiting on the frozen broker"
    out, err = stop_with(proc, signal.SIGINT)
    assert proc.returncode == 130, err
    assert "stopping: flushing" in err
    # One line says what may be lost: the ticks still in flight when it was aborted.
    aborted = re.search(r"^aborted: ([\d,]+) ticks delivered, ([\d,]+) still in flight", err, re.MULTILINE)
    assert aborted and int(aborted.group(2).replace(",", "")) > 0, err
    assert "Traceback" not in err
    assert out == ""


# --- the live status line on a terminal --------------------------------------------


def test_live_status_line_on_a_terminal_then_summary_on_ctrl_c(settings: Settings) -> None:
    term = PtyCommand([*PRODUCE], stack_env(settings))
    try:
        term.wait_for(lambda text: re.search(r"[\d,]+ ticks/s · delivered [1-9][\d,]*", text) is not None)
        assert "synthetic → " + settings.topic in term.text
        assert re.search(r"BTC [\d,.]+\s+ETH [\d,.]+", term.text)
        code = term.interrupt()
        screen = term.text
    finally:
        term.close()
    assert code == 0, screen
    assert "Traceback" not in screen
    assert screen.count("stopping: flushing") == 1
    summary = screen[screen.index("stopping: flushing") :]
    assert table_value(summary, "stopped by") == "stop"
    assert table_value(summary, "undelivered") == "0"
