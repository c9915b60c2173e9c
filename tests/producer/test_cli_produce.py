"""`cryptoctl produce` end to end: replay and synthetic into the local broker, usage errors."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from cryptoctl.settings import Settings
from tests.helpers import consume_all


def read_back(settings: Settings, n: int | None = None) -> list[dict[str, Any]]:
    out = []
    for m in consume_all(settings, n=n, timeout=10):
        tick = orjson.loads(m.value())
        assert m.key() == tick["symbol"].encode() and m.timestamp()[1] == tick["ts"]
        out.append(tick)
    return out


def per_symbol(ticks: list[dict[str, Any]]) -> dict[str, list[tuple[int, float]]]:
    """Kafka keeps order per key (one partition per symbol): compare per symbol."""
    out: dict[str, list[tuple[int, float]]] = {}
    for t in ticks:
        out.setdefault(t["symbol"], []).append((t["ts"], t["price"]))
    return out


REPLAY_CSV = (
    "ts,symbol,price,qty\n"
    "2023-11-14T22:13:20Z,BTC,100,1\n"
    "1700000001000,ETH,10,\n"
    "1699999990000,BTC,99,2\n"  # late on purpose: order must be kept
    "1700000002000,BTC,-5,1\n"  # bad: price
    "2023-11-14T22:13:23.500Z,BTC,101,0.5\n"
)


def test_replay_csv_keeps_order_and_skips_bad_rows(settings: Settings, cli: Any, tmp_path: Path) -> None:
    path = tmp_path / "ticks.csv"
    path.write_text(REPLAY_CSV)
    result = cli("produce", "--source", "replay", "--file", str(path), "--speed", "0",
                 "--format", "json")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    summary = orjson.loads(result.stdout)
    assert (summary["produced"], summary["delivered"], summary["invalid"]) == (4, 4, 1)
    assert summary["stopped_by"] == "end of source"
    assert "ticks.csv:5:" in result.stderr
    assert per_symbol(read_back(settings, 4)) == {
        "BTC": [(1700000000000, 100.0), (1699999990000, 99.0), (1700000003500, 101.0)],
        "ETH": [(1700000001000, 10.0)],
    }


def test_table_summary_is_a_report_on_stderr(settings: Settings, cli: Any, tmp_path: Path) -> None:
    path = tmp_path / "ticks.csv"
    path.write_text(REPLAY_CSV)
    result = cli("produce", "--source", "replay", "--file", str(path), "--speed", "0")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""  # data only on stdout, and a summary table is not data
    rows = dict(re.findall(r"^(\S+(?: \S+)?)  +(.+?)\s*$", result.stderr, re.MULTILINE))
    assert (rows["stopped by"], rows["produced"], rows["delivered"], rows["invalid"]) == (
        "end of source", "4", "4", "1",
    )  # fmt: skip
    assert rows["last prices"] == "BTC 101.00  ETH 10.0000"  # the one price format


def test_replay_jsonl_strict_stops_at_first_bad_row(settings: Settings, cli: Any, tmp_path: Path) -> None:
    path = tmp_path / "ticks.jsonl"
    path.write_text(
        '{"ts": "2023-11-14T22:13:20Z", "symbol": "BTC", "price": 1, "qty": 2}\n'
        '{"ts": 1700000001000, "symbol": "BTC"}\n'
        '{"ts": 1700000002000, "symbol": "BTC", "price": 3}\n'
    )
    result = cli("produce", "--source", "replay", "--file", str(path), "--speed", "0", "--strict")
    assert result.exit_code == 5
    assert "ticks.jsonl:2: missing price" in result.stderr
    assert re.search(r"^stopped by +data error", result.stderr, re.MULTILINE)  # the summary too
    ticks = read_back(settings)
    assert [(t["ts"], t["price"], t["qty"]) for t in ticks] == [(1700000000000, 1.0, 2.0)]


def test_bytes_not_utf8_mid_file_exit_5_after_the_summary(
    settings: Settings, cli: Any, tmp_path: Path
) -> None:
    path = tmp_path / "ticks.csv"
    good = b"ts,symbol,price\n" + b"".join(b"%d,BTC,%d\n" % (1700000000000 + i, i + 1) for i in range(5000))
    path.write_bytes(good + b"1700000009000,BT\xc3C,1\n1700000009001,BTC,1\n")
    result = cli("produce", "--source", "replay", "--file", str(path), "--speed", "0",
                 "--format", "json")  # fmt: skip
    assert result.exit_code == 5, result.stderr
    summary = orjson.loads(result.stdout)  # what was produced is still summed up
    assert (summary["produced"], summary["delivered"], summary["stopped_by"]) == (5000, 5000, "data error")
    where = f"{path}:5002: not UTF-8 text (byte 0xc3 at offset {len(good) + 16:,})"
    assert summary["last_problem"] == where
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {where} — ")
    assert len(read_back(settings, 5000)) == 5000

    table = cli("produce", "--source", "replay", "--file", str(path), "--speed", "0",
                "--topic", settings.dlq)  # fmt: skip
    assert table.exit_code == 5 and table.stdout == ""
    rows = dict(re.findall(r"^(\S+(?: \S+)?)  +(.+?)\s*$", table.stderr, re.MULTILINE))
    assert (rows["stopped by"], rows["produced"]) == ("data error", "5,000")
    assert table.stderr.rstrip().splitlines()[-1].startswith(f"error: {where}")


def test_a_bad_header_exits_5_in_one_line(settings: Settings, cli: Any, tmp_path: Path) -> None:
    path = tmp_path / "ticks.csv"
    path.write_text("time,coin,value\n1700000000000,BTC,1\n")
    result = cli("produce", "--source", "replay", "--file", str(path), "--speed", "0")
    assert result.exit_code == 5
    assert f"error: {path}:1: CSV header 'time,coin,value' lacks ts, symbol, price" in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.startswith("error:")]) == 1


def test_a_csv_with_a_bom_is_replayed(settings: Settings, cli: Any, tmp_path: Path) -> None:
    path = tmp_path / "ticks.csv"
    path.write_bytes(b"\xef\xbb\xbf" + REPLAY_CSV.encode())
    result = cli("produce", "--source", "replay", "--file", str(path), "--speed", "0", "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert (orjson.loads(result.stdout)["delivered"], orjson.loads(result.stdout)["invalid"]) == (4, 1)


def test_synthetic_same_seed_same_ticks(settings: Settings, cli: Any) -> None:
    args = ("produce", "--source", "synthetic", "--symbols", "BTC,ETH,SOL", "--seed", "7",
            "--start", "2024-01-01T00:00:00Z", "--rate", "1000", "--count", "3000")  # fmt: skip
    first = cli(*args, "--format", "json")
    assert first.exit_code == 0, first.stderr
    assert orjson.loads(first.stdout)["delivered"] == 3000
    a = read_back(settings, 3000)
    second = cli(*args, "--topic", settings.dlq)  # another empty topic of this test
    assert second.exit_code == 0, second.stderr
    b = [orjson.loads(m.value()) for m in consume_all(settings, settings.dlq, n=3000, timeout=10)]
    assert per_symbol(a) == per_symbol(b) and len(a) == 3000
    assert min(t["ts"] for t in a) == 1704067200000


def test_synthetic_live_rate_is_honoured(settings: Settings, cli: Any) -> None:
    result = cli("produce", "--source", "synthetic", "--rate", "400", "--duration", "3s",
                 "--format", "json")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    returned_ms = int(time.time() * 1000)
    ticks = read_back(settings)
    span_s = (max(t["ts"] for t in ticks) - min(t["ts"] for t in ticks)) / 1000
    # A property of the output: ticks per second of event time, not of this machine's speed.
    assert len(ticks) == orjson.loads(result.stdout)["delivered"]
    assert span_s > 1.0
    assert 400 * 0.9 <= (len(ticks) - 1) / span_s <= 400 * 1.1
    # Event times follow --rate by construction; these catch broken throttling: an
    # unthrottled feed makes far more than 3 s x 400 ticks and runs ahead of the clock.
    assert len(ticks) <= 400 * 3 * 1.1 + 1
    assert max(t["ts"] for t in ticks) <= returned_ms


def test_synthetic_out_of_order_share(settings: Settings, cli: Any) -> None:
    result = cli("produce", "--source", "synthetic", "--symbols", "BTC", "--seed", "1",
                 "--start", "1h", "--rate", "100", "--count", "2000", "--out-of-order", "0.1",
                 "--max-delay", "2s")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    ts = [t["ts"] for t in read_back(settings, 2000)]
    high, late = 0, []
    for t in ts:
        if t < high:
            late.append(high - t)
        high = max(high, t)
    assert 100 < len(late) < 300 and max(late) <= 2000


REPLAY_X = ("--source", "replay", "--file", "x.csv")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--source", "nope"), "'nope' is not one of"),
        (("--interval", "soon"), "invalid duration"),
        (("--source", "replay"), "--source replay needs --file"),
        (("--source", "synthetic", "--file", "x.csv"), "--file is for --source replay"),
        (("--symbols", "BTC,NOPE"), "unknown symbol NOPE"),
        (("--coin-id", "NOPE"), "invalid --coin-id"),
        (("--source", "synthetic", "--start", "whenever"), "invalid time"),
        (("--rate", "-1"), "--rate"),
        (("--source", "replay", "--file", "/nonexistent.csv"), "does not exist"),
        # A flag of another source is refused even where it has a default (it was ignored).
        ((*REPLAY_X, "--interval", "10s"), "--interval is for --source coingecko"),
        ((*REPLAY_X, "--rate", "10"), "--rate is for --source synthetic"),
        ((*REPLAY_X, "--out-of-order", "0"), "--out-of-order is for --source"),
        ((*REPLAY_X, "--max-delay", "5s"), "--max-delay is for --source synthetic"),
        ((*REPLAY_X, "--symbols", "BTC"), "--symbols is for --source coingecko or"),
        (("--source", "synthetic", "--speed", "1"), "--speed is for --source replay"),
        (("--source", "synthetic", "--interval", "1m"), "--interval is for --source coingecko"),
        (("--rate", "0"), "--rate is for --source synthetic — drop it or use --source synthetic"),
        (("--max-requests-per-minute", "5", "--source", "synthetic"), "--max-requests-per-minute is for"),
    ],
)
def test_bad_flags_exit_2_with_a_hint(cli: Any, args: tuple[str, ...], needle: str) -> None:
    result = cli("produce", *args)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert needle in result.stderr
    assert result.stdout == ""


def test_bad_flags_are_one_line(cli: Any) -> None:
    result = cli("produce", "--source", "replay", "--file", "x.csv", "--interval", "10s")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "error: --interval is for --source coingecko — drop it or use --source coingecko"
    ]


def test_per_source_defaults_apply_and_show_in_help(
    cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cryptoctl.settings import load_settings
    from cryptoctl.sources.spec import SourceKind, SourceSpec, build_source

    settings = load_settings({}, environ={})
    synthetic: Any = build_source(settings, SourceSpec(SourceKind.synthetic))
    assert (synthetic.config.symbols, synthetic.config.rate) == (["BTC", "ETH"], 10.0)
    assert (synthetic.config.out_of_order, synthetic.config.max_delay_ms) == (0.0, 5000)
    zero: Any = build_source(settings, SourceSpec(SourceKind.synthetic, rate=0.0))
    assert zero.config.rate == 0.0
    path = tmp_path / "t.csv"
    path.write_text("ts,symbol,price\n")
    replay: Any = build_source(settings, SourceSpec(SourceKind.replay, file=path))
    assert replay.config.speed == 1.0
    coingecko: Any = build_source(settings, SourceSpec(SourceKind.coingecko))
    assert coingecko.config.interval_s == 10.0

    monkeypatch.setenv("COLUMNS", "250")
    text = " ".join(cli("produce", "--help").stdout.split())
    for needle in ("1m. [default: 10s]", "unthrottled. [default: 10]", "(0..1). [default: 0]",
                   "may be. [default: 5s]", "as fast as possible. [default: 1]",
                   "(coingecko, synthetic). [default: BTC,ETH]"):  # fmt: skip
        assert needle in text


def test_unreachable_broker_exits_3_naming_the_address(cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import free_port

    address = f"127.0.0.1:{free_port()}"
    monkeypatch.setenv("CRYPTOCTL_KAFKA_BOOTSTRAP", address)
    result = cli("produce", "--source", "synthetic", "--count", "1")
    assert result.exit_code == 3
    assert f"Kafka is not reachable at {address}" in result.stderr
    assert "cryptoctl up" in result.stderr


def test_missing_topic_exits_7_and_says_who_creates_it(settings: Settings, cli: Any) -> None:
    result = cli("produce", "--source", "synthetic", "--count", "1", "--topic", "no-such-topic")
    assert result.exit_code == 7
    assert "Kafka topic 'no-such-topic' does not exist" in result.stderr and "cryptoctl up" in result.stderr


def test_on_a_terminal_the_status_line_is_live_and_cleared(settings: Settings, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cryptoctl.cli.app import app
    from cryptoctl.cli.context import CliState
    from tests.watch.pty_terminal import plain

    path = tmp_path / "ticks.csv"
    path.write_text(REPLAY_CSV)
    args = ["produce", "--source", "replay", "--file", str(path), "--speed", "0", "-f", "json"]
    result = CliRunner().invoke(app, args, obj=CliState(stderr_isatty=True, width=200))
    assert result.exit_code == 0, result.stderr
    assert orjson.loads(result.stdout)["delivered"] == 4  # -f is --format
    screen = plain(result.stderr.encode())
    assert f"replay → {settings.topic}" in screen and "ticks/s · delivered" in screen
    assert "\x1b[2K" in result.stderr  # the status line was cleared at the end
    assert "warning: skipped bad row" in screen and "ticks.csv:5:" in screen
