"""Replay a recorded file: CSV with a header, or JSON Lines; fields ``ts,symbol,price[,qty]``.

``ts`` is epoch milliseconds or ISO-8601 (a naive time is UTC). Rows are produced in file
order, since the order is how late data is reproduced. ``speed`` scales the recorded pace
(the gaps between the highest event times seen so far); ``0`` is as fast as possible.
A bad row is reported with its line number, counted and skipped, or, with ``strict``,
stops the replay with a DataError.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from cryptoctl.errors import DataError, InvalidTick, UsageError
from cryptoctl.sources.base import SourceCounters, StopFlag, checked_tick, log, now_ms
from cryptoctl.tick import Tick

SOURCE = "replay"
_BATCH = 2000
_MAX_WAIT_S = 0.05
_REQUIRED = ("ts", "symbol", "price")


@dataclass(frozen=True)
class ReplayConfig:
    path: Path
    speed: float = 1.0  # 0 = as fast as possible
    strict: bool = False
    fmt: str | None = None  # "csv" | "jsonl"; None = by extension, then by content


def detect_format(path: Path, head: str) -> str:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in {".jsonl", ".ndjson", ".json"}:
        return "jsonl"
    return "jsonl" if head.lstrip().startswith("{") else "csv"


def parse_ts(value: Any) -> int:
    """Epoch ms (number or digits) or ISO-8601 -> epoch ms; ValueError with the reason."""
    if isinstance(value, bool):
        raise ValueError(f"ts must be epoch ms or ISO-8601, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"ts must be whole epoch milliseconds, got {value!r}")
        return int(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"ts must be epoch ms or ISO-8601, got {value!r}")
    text = value.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"ts {text!r} is neither epoch ms nor ISO-8601") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    delta = parsed - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def _number(value: Any, name: str) -> Any:
    """CSV cells are text: numbers become floats; JSON values are passed on for validation."""
    if isinstance(value, str):
        text = value.strip()
        if text == "" and name == "qty":
            return None
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{name} {value!r} is not a number") from None
    return value


def row_to_tick(row: dict[str, Any], recv_ts: int) -> Tick:
    """One record -> a valid Tick, or ValueError/InvalidTick with a one-line reason."""
    missing = [name for name in _REQUIRED if row.get(name) in (None, "")]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    symbol = row["symbol"]
    if not isinstance(symbol, str):
        raise ValueError(f"symbol must be text, got {symbol!r}")
    obj = {
        "v": 1,
        "symbol": symbol.strip().upper(),
        "quote": "USD",
        "price": _number(row["price"], "price"),
        "qty": _number(row.get("qty"), "qty"),
        "ts": parse_ts(row["ts"]),
        "source": SOURCE,
        "recv_ts": recv_ts,
    }
    return checked_tick(obj)


def _csv_records(text: Iterator[str]) -> Iterator[tuple[int, dict[str, Any] | str]]:
    reader = csv.reader(text)
    header: list[str] | None = None
    for fields in reader:
        line = reader.line_num
        if not fields or all(not f.strip() for f in fields):
            continue
        if header is None:
            header = [f.strip().lower() for f in fields]
            absent = [n for n in _REQUIRED if n not in header]
            if absent:
                yield line, f"CSV header lacks {', '.join(absent)} (need ts,symbol,price[,qty])"
                return
            continue
        if len(fields) != len(header):
            yield line, f"{len(fields)} fields, the header has {len(header)}"
            continue
        yield line, dict(zip(header, fields, strict=True))


def _jsonl_records(lines: Iterator[str]) -> Iterator[tuple[int, dict[str, Any] | str]]:
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            yield line_no, f"not valid JSON ({exc.msg})"
            continue
        if not isinstance(obj, dict):
            yield line_no, f"expected a JSON object, got {type(obj).__name__}"
            continue
        yield line_no, obj


def read_records(path: Path, fmt: str | None = None) -> Iterator[tuple[int, Tick | str]]:
    """(line number, Tick or the reason the row is bad), in file order.

    ``recv_ts`` of the ticks is when the row was read.
    """
    try:
        handle = path.open(encoding="utf-8", newline="")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    with handle:
        head = handle.read(4096)
        handle.seek(0)
        kind = fmt or detect_format(path, head)
        lines: Iterator[str] = _checked_lines(handle, path)
        records = _csv_records(lines) if kind == "csv" else _jsonl_records(lines)
        for line_no, record in records:
            if isinstance(record, str):
                yield line_no, record
                continue
            try:
                yield line_no, row_to_tick(record, now_ms())
            except (ValueError, InvalidTick) as exc:
                yield line_no, str(exc)


def _checked_lines(handle: io.TextIOBase, path: Path) -> Iterator[str]:
    try:
        yield from handle
    except UnicodeDecodeError:
        raise DataError(f"{path} is not UTF-8 text") from None


class ReplaySource:
    name = SOURCE

    def __init__(self, config: ReplayConfig) -> None:
        if config.speed < 0:
            raise UsageError("--speed must be >= 0 (0 = as fast as possible)")
        if not config.path.is_file():
            raise UsageError(f"replay file {config.path} does not exist")
        self.config = config
        self.counters = SourceCounters()
        self.rows = 0

    def _bad(self, line_no: int, reason: str) -> None:
        message = f"{self.config.path}:{line_no}: {reason}"
        if self.config.strict:
            raise DataError(f"bad row at {message}", hint="fix the row, or drop --strict to skip it")
        self.counters.invalid += 1
        self.counters.last_problem = message
        log.warning("skipped bad row %s", message)

    def batches(self, stop: StopFlag) -> Iterator[list[Tick]]:
        speed = self.config.speed
        pacer = _Pacer(speed) if speed > 0 else None
        out: list[Tick] = []
        for line_no, item in read_records(self.config.path, self.config.fmt):
            if stop.is_set():
                break
            self.rows += 1
            if isinstance(item, str):
                if self.config.strict and out:
                    yield out  # rows accepted before the bad one are still produced
                    out = []
                self._bad(line_no, item)
                continue
            if pacer is not None and pacer.delay_s(item.ts) > 0:
                if out:
                    yield out
                    out = []
                if not pacer.wait(item.ts, stop):
                    break
                item = replace(item, recv_ts=now_ms())  # received now, after the wait
            if pacer is not None:
                pacer.high_ts = max(pacer.high_ts, item.ts)
            out.append(item)
            if len(out) >= _BATCH:
                yield out
                out = []
        if out:
            yield out


class _Pacer:
    """Wall-clock pacing on the recorded event times, scaled by ``speed``.

    Driven by the highest event time seen, so a late row in the file is emitted at once
    after its neighbours instead of stalling the replay.
    """

    def __init__(self, speed: float) -> None:
        self.speed = speed
        self.first_ts: int | None = None
        self.high_ts = 0
        self.t0 = 0.0

    def delay_s(self, ts: int) -> float:
        if self.first_ts is None:
            self.first_ts, self.high_ts, self.t0 = ts, ts, time.monotonic()
            return 0.0
        if ts <= self.high_ts:
            return 0.0
        due = self.t0 + (ts - self.first_ts) / 1000 / self.speed
        return due - time.monotonic()

    def wait(self, ts: int, stop: StopFlag) -> bool:
        """Sleep until the row is due; False when stopped meanwhile."""
        while (left := self.delay_s(ts)) > 0:
            if stop.wait(min(left, _MAX_WAIT_S)):
                return False
        return True
