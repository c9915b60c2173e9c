"""Output into a pipe whose reader went away (`cryptoctl --help | head -1`): a quiet exit 0."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

ENV = {"PATH": "/usr/bin:/bin", "CRYPTOCTL_HOME": "/nonexistent/cryptoctl-test", "COLUMNS": "80"}
HELPS = [["--help"], ["produce", "--help"], ["candles", "--help"], ["db", "--help"], ["--version"]]


def into_closed_pipe(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run with stdout a pipe whose read end is closed before anything is written."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "cryptoctl", *args], stdout=write_end,
            stderr=subprocess.PIPE, text=True, timeout=60, env=env or ENV,
        )
    finally:
        os.close(write_end)
    return proc.returncode, proc.stderr


def head_1(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Like `cryptoctl ... | head -1`: read one line, then close the pipe."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "cryptoctl", *args], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=env or ENV,
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read()
    return proc.wait(timeout=60), first, err


@pytest.mark.parametrize("args", HELPS, ids=" ".join)
def test_help_into_a_closed_pipe_exits_0_quietly(args: list[str]) -> None:
    code, err = into_closed_pipe(*args)
    assert (code, err) == (0, "")


@pytest.mark.parametrize("args", HELPS[:2], ids=" ".join)
def test_help_into_head_1_exits_0_quietly(args: list[str]) -> None:
    code, first, err = head_1(*args)
    assert (code, err) == (0, "")
    assert first.strip() == "" or first.startswith("cryptoctl ")
