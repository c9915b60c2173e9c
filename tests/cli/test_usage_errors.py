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
        (["up", "--docker", "--profile", "nosuch"], "'nosuch' is not one of 'tools'"),
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


def test_a_compose_profile_needs_docker() -> None:
    result = cryptoctl("up", "--profile", "tools")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "error: --profile needs --docker — cryptoctl up --docker --profile tools"
    ]


def test_help_and_version_still_exit_0() -> None:
    assert cryptoctl("--version").stdout.startswith("cryptoctl ")
    result = cryptoctl("candles", "--help")
    assert result.returncode == 0 and "Usage: cryptoctl candles" in result.stdout


@pytest.mark.parametrize(
    "url",
    [
        "host=localhost port=1 password=hunter2 nosuchoption=1",  # a bad conninfo option
        "postgresql://u:hunter2@[bad/x",  # a malformed URL
        "postgresql://u@localhost:1/x?password=hunter2&bogus=1",
    ],
)
def test_no_error_echoes_a_database_password(url: str) -> None:
    for args in (["candles"], ["config"], ["config", "--format", "json"]):
        result = cryptoctl("--database-url", url, *args)
        assert "hunter2" not in result.stdout + result.stderr, (args, result)
        if args == ["candles"]:
            assert result.returncode in (2, 3), result.stderr
            assert result.stderr.count("\n") == 1, result.stderr


@pytest.mark.parametrize(
    ("table", "says"),
    [
        ('"foo.bar" = "x"', 'No such configuration property: "foo.bar"'),
        ('"security.protocol" = "bogus"', 'Invalid value "bogus"'),
    ],
)
def test_a_bad_kafka_property_is_a_configuration_error(tmp_path, table: str, says: str) -> None:
    # Before: "Kafka is not reachable" (exit 3), or an internal error in watch.
    config = tmp_path / "config.toml"
    config.write_text(f"[kafka]\n{table}\n")
    for args in (["status"], ["aggregate", "--until-idle", "1s"], ["watch"],
                 ["produce", "--source", "synthetic", "--duration", "1s"]):
        result = cryptoctl("--config", str(config), *args)
        assert result.returncode == 2, (args, result.stderr)
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("error: invalid Kafka client setting") and says in last
        assert "[kafka] table" in last


@pytest.mark.parametrize(
    "args",
    [["candles"], ["prices"], ["stats"], ["watch"], ["run"], ["produce", "--source", "synthetic"]],
)
def test_every_command_checks_symbols_alike(args: list[str]) -> None:
    # Before: `candles -s btc-usd` said "no candles" where `run` gave a usage error.
    result = cryptoctl(*args, "-s", "BTC", "--symbol", "btc-usd")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (
        "error: Invalid value for '--symbols' / '-s': invalid symbol 'btc-usd' (symbols are"
        f" 1-20 ASCII letters/digits, e.g. BTC,ETH) — see `cryptoctl {args[0]} --help`"
    )
