"""A test per documented exit code and cause, through the real command line (all but 1,
an internal error or ticks the broker never acknowledged, which need a bug or a broker
that stops answering mid-run; tests/pipeline/test_run.py covers a worker's internal error).

Each error is one line on stderr starting with ``error:``; the codes are
``cryptoctl.errors.ExitCode`` and the table in docs/troubleshooting.md.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from cryptoctl.errors import ExitCode
from cryptoctl.settings import Settings
from tests.conftest import free_port
from tests.helpers import stack_env

CRYPTOCTL = [sys.executable, "-m", "cryptoctl"]


def cryptoctl(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CRYPTOCTL, *args], env=env, capture_output=True, text=True, timeout=90
    )


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one error line; anything else on stderr (a summary) comes before it."""
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert result.stderr.rstrip("\n").splitlines()[-1] == errors[0], result.stderr
    assert "Traceback" not in result.stderr
    return errors[0]


@pytest.fixture
def nowhere(tmp_path: Path) -> dict[str, str]:
    """No stack: every service at a closed port, a state dir of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRYPTOCTL_")}
    env.pop("DATABASE_URL", None)
    return env | {
        "CRYPTOCTL_HOME": str(tmp_path / "home"),
        "CRYPTOCTL_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
        "CRYPTOCTL_DATABASE_URL": f"postgresql://cryptoctl:hunter2@127.0.0.1:{free_port()}/cryptoctl",
        "CRYPTOCTL_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
    }


# --- 0 ---------------------------------------------------------------------------------


def test_0_ok(settings: Settings) -> None:
    result = cryptoctl("status", "--format", "json", env=stack_env(settings))
    assert result.returncode == ExitCode.OK == 0, result.stderr
    assert result.stderr == ""


# --- 2 ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["candles", "--xyzzy"], "error: No such option: --xyzzy — see `cryptoctl candles --help`"),
        (["config", "--format", "csv"], "'csv' is not one of 'table', 'json'"),
        (["status", "--format", "csv"], "'csv' is not one of 'table', 'json'"),
        (["db", "prune", "--older-than", "soon"], "invalid duration 'soon'"),
    ],
    ids=["bad flag", "config --format csv", "status --format csv", "db prune bad duration"],
)
def test_2_usage(nowhere: dict[str, str], args: list[str], says: str) -> None:
    result = cryptoctl(*args, env=nowhere)
    assert result.returncode == ExitCode.USAGE == 2, result.stderr
    assert result.stdout == ""
    assert says in error_line(result)


def test_2_bad_config_file(nowhere: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("bogus = 1\n")
    result = cryptoctl("--config", str(config), "config", env=nowhere)
    assert result.returncode == ExitCode.USAGE, result.stderr
    assert error_line(result) == f"error: unknown setting 'bogus' in config file {config}"


# --- 3 ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "service", "setting"),
    [
        (["status"], "Kafka", "start the local stack with `cryptoctl up`"),
        (["produce", "--source", "synthetic", "--count", "1"], "Kafka", "CRYPTOCTL_KAFKA_BOOTSTRAP"),
        (["candles"], "PostgreSQL", "CRYPTOCTL_DATABASE_URL"),
    ],
    ids=["status", "produce", "candles"],
)
def test_3_service_down(nowhere: dict[str, str], args: list[str], service: str, setting: str) -> None:
    result = cryptoctl(*args, env=nowhere)
    assert result.returncode == ExitCode.SERVICE_UNAVAILABLE == 3, result.stderr
    line = error_line(result)
    assert line.startswith(f"error: {service} is not reachable at 127.0.0.1:"), line
    assert setting in line and "hunter2" not in result.stdout + result.stderr


def test_3_status_names_every_service_down(nowhere: dict[str, str]) -> None:
    result = cryptoctl("status", env=nowhere)
    assert result.returncode == ExitCode.SERVICE_UNAVAILABLE, result.stderr
    assert "(also down: PostgreSQL, Redis)" in error_line(result)
    assert "Kafka" in result.stdout  # the table is still printed, on stdout


# --- 7 ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["watch", "--duration", "1s"],
        ["produce", "--source", "synthetic", "--count", "1"],
        ["aggregate", "--until-idle", "1s"],
    ],
    ids=["watch", "produce", "aggregate"],
)
def test_7_topic_missing_is_said_alike(settings: Settings, args: list[str]) -> None:
    env = stack_env(settings) | {"CRYPTOCTL_TOPIC": "no-such-topic"}
    result = cryptoctl(*args, env=env)
    assert result.returncode == ExitCode.TOPIC_MISSING == 7, result.stderr
    assert error_line(result) == (
        f"error: Kafka topic 'no-such-topic' does not exist on {settings.kafka_bootstrap} — "
        "`cryptoctl up` creates it; on another cluster create it there, or set "
        "CRYPTOCTL_TOPIC (or --topic) to an existing one"
    )


# --- 4 ---------------------------------------------------------------------------------


def test_4_unusable_state_directory(nowhere: dict[str, str], tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    env = nowhere | {"CRYPTOCTL_HOME": str(not_a_dir / "home")}
    result = cryptoctl("up", env=env)
    assert result.returncode == ExitCode.STACK == 4, result.stderr
    assert error_line(result) == (
        f"error: the state directory {not_a_dir / 'home'} is not usable: Not a directory — "
        "set CRYPTOCTL_HOME to a directory you can write to"
    )


# --- 5 ---------------------------------------------------------------------------------


def test_5_replay_of_a_file_that_is_not_utf8(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "ticks.csv"
    path.write_bytes(b"ts,symbol,price\n1700000000000,BTC,1.5\n1700000001000,BT\xe9,1.5\n")
    result = cryptoctl("produce", "--source", "replay", "--file", str(path), env=stack_env(settings))
    assert result.returncode == ExitCode.DATA == 5, result.stderr
    assert error_line(result) == (
        f"error: {path}:3: not UTF-8 text (byte 0xe9 at offset 54) — convert it to UTF-8 "
        "first, e.g. iconv -f latin1 -t utf-8"
    )


# --- 6 ---------------------------------------------------------------------------------


def test_6_database_refuses_a_statement(settings: Settings) -> None:
    env = stack_env(settings) | {"CRYPTOCTL_DB_SCHEMA": "never_initialised"}
    result = cryptoctl("candles", env=env)
    assert result.returncode == ExitCode.DATABASE == 6, result.stderr
    line = error_line(result)
    assert line.startswith("error: PostgreSQL at 127.0.0.1:"), line
    assert 'reading candles failed: relation "price_aggregates_1m" does not exist' in line
    assert "cryptoctl db init" in line


# --- 9 ---------------------------------------------------------------------------------


def test_9_pipeline_stalled(settings: Settings) -> None:
    from tests.aggregator.data import make_ticks
    from tests.aggregator.procs import wait_for
    from tests.helpers import produce_ticks
    from tests.stack.test_pipeline_status import aggregate_once

    env = stack_env(settings)
    aggregate_once(settings)  # a checkpoint, then nobody consumes
    assert cryptoctl("status", "--stalled-after", "1s", env=env).returncode == ExitCode.OK
    for seed in (9, 10):  # two batches, so the local broker's end offsets move past it
        produce_ticks(settings, make_ticks(30, seed=seed))

    def stalled() -> bool:
        return cryptoctl("status", "--stalled-after", "1s", env=env).returncode == ExitCode.PIPELINE_STALLED

    wait_for("exit 9", stalled, 60)
    result = cryptoctl("status", "--stalled-after", "1s", env=env)
    assert result.returncode == ExitCode.PIPELINE_STALLED == 9
    assert "stalled" in result.stdout and settings.group in result.stdout  # the table first
    line = error_line(result)
    says = f"error: pipeline stalled, no commit for 1.0s with messages waiting: {settings.group} on"
    assert line.startswith(says), line
    assert "cryptoctl aggregate" in line


# --- 130 -------------------------------------------------------------------------------


def test_130_second_ctrl_c(settings: Settings) -> None:
    # A CoinGecko that accepts the connection and never answers: the first Ctrl-C asks
    # the producer to stop, but the poll still hangs, so the second one aborts.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(60)
        env = stack_env(settings) | {
            "CRYPTOCTL_COINGECKO_API_URL": f"http://127.0.0.1:{server.getsockname()[1]}/api/v3"
        }
        proc = subprocess.Popen(
            [*CRYPTOCTL, "produce", "--source", "coingecko", "--symbols", "BTC"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            conn, _ = server.accept()  # the producer is in its first poll now
            with conn:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(1.0)
                except subprocess.TimeoutExpired:
                    proc.send_signal(signal.SIGINT)
                out, err = proc.communicate(timeout=30)
        finally:
            proc.kill()
    assert proc.returncode == ExitCode.INTERRUPTED == 130, err
    assert "Traceback" not in err and out == ""


def test_the_documented_table_is_exit_code() -> None:
    doc = (Path(__file__).parent.parent / "docs" / "troubleshooting.md").read_text()
    rows = re.findall(r"^\| (\d+) \| (\w+) \|", doc, re.MULTILINE)
    assert [(int(code), name) for code, name in rows] == [(c.value, c.name) for c in ExitCode]
