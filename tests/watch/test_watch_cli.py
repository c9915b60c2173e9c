"""`cryptoctl watch` against the real local broker: JSON lines, and the live display in a pty."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

from cryptoctl.settings import Settings
from cryptoctl.tick import Tick
from cryptoctl.watch.reader import TAIL_PER_PARTITION
from tests.helpers import produce_ticks, stack_env
from tests.watch.pty_terminal import PtyCommand

NOW = int(time.time() * 1000)


def ticks(n: int, *, symbols: tuple[str, ...] = ("BTC", "ETH", "SOL")) -> list[Tick]:
    base = {"BTC": 67000.0, "ETH": 3400.0, "SOL": 150.0}
    return [
        Tick(
            symbol=sym,
            price=round(base[sym] + i * 0.25, 2),
            ts=NOW + i * 10,
            source="synthetic",
            recv_ts=NOW + i * 10,
            qty=0.5,
            extra={"change_24h_pct": 1.5} if i % 2 else {},
        )
        for i in range(n)
        for sym in symbols
    ]


def test_jsonl_yields_exactly_the_produced_ticks(settings: Settings) -> None:
    produced = ticks(40)
    produce_ticks(settings, produced)
    produce_ticks(settings, [(b"BTC", b"{not json"), (b"ETH", b'{"symbol": "eth"}')])
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cryptoctl",
            "watch",
            "--format",
            "jsonl",
            "--from-beginning",
            "--duration",
            "4s",
            "--symbol",
            "BTC",
            "-s",
            "sol",
        ],
        env=stack_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    wanted = [t.to_dict() for t in produced if t.symbol in {"BTC", "SOL"}]
    key = lambda d: (d["symbol"], d["ts"])  # noqa: E731
    assert sorted(lines, key=key) == sorted(wanted, key=key)
    # Per symbol (one partition each) the order is the produced order.
    assert [d["price"] for d in lines if d["symbol"] == "BTC"] == [
        t.price for t in produced if t.symbol == "BTC"
    ]
    assert "80 ticks from 2 symbols" in result.stderr and "2 invalid" in result.stderr


def test_not_a_tty_is_never_a_live_display(cli: Any, settings: Settings) -> None:
    produce_ticks(settings, ticks(3, symbols=("BTC",)))
    result = cli("watch", "--format", "table", "--from-beginning", "--duration", "2s")
    assert result.exit_code == 0, result.stderr
    assert [json.loads(line)["symbol"] for line in result.stdout.splitlines()] == ["BTC"] * 3
    assert "watch summary: 3 ticks" in result.stderr


def test_starts_near_the_end_without_from_beginning(settings: Settings) -> None:
    produced = ticks(200, symbols=("BTC",))
    for start in range(0, 200, 20):  # ten producer batches of 20
        produce_ticks(settings, produced[start : start + 20])
    result = subprocess.run(
        [sys.executable, "-m", "cryptoctl", "watch", "-f", "jsonl", "--duration", "3s"],
        env=stack_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    prices = [json.loads(line)["price"] for line in result.stdout.splitlines()]
    # The last TAIL_PER_PARTITION messages, plus at most one producer batch where the broker
    # reports the end of the log at the start of its last batch (the local Tansu broker).
    assert TAIL_PER_PARTITION <= len(prices) <= TAIL_PER_PARTITION + 20
    assert prices == [t.price for t in produced[-len(prices) :]]


def test_missing_topic_is_one_clear_line(cli: Any, settings: Settings, monkeypatch: Any) -> None:
    monkeypatch.setenv("CRYPTOCTL_TOPIC", "no-such-topic-here")
    result = cli("watch", "--duration", "1s")
    assert result.exit_code == 2
    assert "topic 'no-such-topic-here' does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def test_live_display_in_a_terminal_and_ctrl_c_summary(settings: Settings) -> None:
    produce_ticks(settings, ticks(5))
    term = PtyCommand(["watch"], stack_env(settings), cols=160, rows=40)
    try:
        screen = term.wait_for(lambda s: all(x in s for x in ("BTC", "ETH", "SOL", "15 ticks")))
        assert "67,001.00" in screen  # BTC's last price (67000 + 4 * 0.25)
        assert "3,401.00" in screen and "151.00" in screen
        assert "invalid 0" in screen and "sources: synthetic 15" in screen
        produce_ticks(settings, [(b"SOL", b"garbage")])
        produce_ticks(settings, [Tick("BTC", 68000.0, NOW + 999, "synthetic", NOW + 999)])
        term.wait_for(lambda s: "68,000.00 ▲" in s and "invalid 1" in s)
        assert term.interrupt() == 0
        tail = term.text.split("watch summary:")[-1]
        assert "16 ticks from 3 symbols" in tail and "1 invalid" in tail
        assert "BTC    last 68,000.00" in tail
        assert "Traceback" not in term.text
    finally:
        term.close()


def test_a_closed_pipe_ends_watch_quietly(settings: Settings) -> None:
    produce_ticks(settings, ticks(1_000))  # 3,000 lines: more than a pipe buffer holds
    proc = subprocess.Popen(
        [sys.executable, "-m", "cryptoctl", "watch", "--from-beginning", "--format", "jsonl",
         "--duration", "60s"],
        env=stack_env(settings), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = json.loads(proc.stdout.readline())
    assert first["symbol"] in {"BTC", "ETH", "SOL"}
    proc.stdout.close()  # like `| head -1`
    t0 = time.monotonic()
    code = proc.wait(timeout=30)
    stderr = proc.stderr.read().decode()
    assert code == 0, stderr
    assert time.monotonic() - t0 < 20  # stopped by the closed pipe, not by --duration
    assert "Traceback" not in stderr and "error" not in stderr.lower()
