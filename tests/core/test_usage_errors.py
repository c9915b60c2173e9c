"""Usage errors as a person sees them: one line on stderr, exit 2, a hint to --help."""

from __future__ import annotations

import subprocess
import sys

import pytest


def cryptoctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cryptoctl", *args], capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "CRYPTOCTL_HOME": "/nonexistent/cryptoctl-test"},
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["candles", "--bogus"], "No such option: --bogus"),
        (["candles", "--interval", "7m"], "'7m' is not one of"),
        (["nosuch"], "No such command 'nosuch'"),
        (["candles", "--since", "99999999999999999999d"], "too long: at most 100 years"),
    ],
)
def test_a_usage_error_is_one_line_and_exit_2(args: list[str], says: str) -> None:
    result = cryptoctl(*args)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and says in lines[0]
    if args[0] != "candles" or args[1] != "--since":  # parse errors point at --help
        assert "--help`" in lines[0]


def test_help_and_version_still_exit_0() -> None:
    assert cryptoctl("--version").stdout.startswith("cryptoctl ")
    result = cryptoctl("candles", "--help")
    assert result.returncode == 0 and "Usage: cryptoctl candles" in result.stdout
