"""Replay a recorded file: CSV with a header, or JSON Lines; fields ``ts,symbol,price[,qty]``.

``ts`` is epoch milliseconds or ISO-8601 (a naive time is UTC). Rows are produced in file
order, since the order is how late data is reproduced. ``speed`` scales the recorded pace
(the gaps between the highest event times seen so far); ``0`` is as fast as possible.
A bad row is reported with its line number, counted and skipped, or, with ``strict``,
stops the replay with a DataError. A file that cannot be read as intended (bytes that are
not UTF-8, a CSV header without the required columns) stops it with a DataError whatever
``strict`` says, after the rows before the problem.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import chain
from pathlib import Path
from typing import IO, Any

import orjson

from cryptoctl.errors import DataError, InvalidTick, UsageError
from cryptoctl.sources.base import SourceCounters, StopFlag, log, now_ms, plain_fields_ok
from cryptoctl.tick import ValidTick, checked_tick, trusted_tick
from cryptoctl.times import datetime_ms

SOURCE = "replay"
_BATCH = 2000
_MAX_WAIT_S = 0.05
_REQUIRED = ("ts", "symbol", "price")
_CLOCK_EVERY = 256  # rows between readings of the clock for recv_ts
_MAX_SYMBOLS = 10_000  # checked symbols remembered per file
_BLOCK = 1 << 18  # bytes decoded at a time (then up to the end of the line)
_BOM = "\ufeff"
_MAX_REASON = 200  # characters of a bad row's reason (a cell may be huge)
_UTF8_HINT = "convert it to UTF-8 first, e.g. iconv -f latin1 -t utf-8"


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
    return datetime_ms(parsed)


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


def row_to_tick(row: dict[str, Any], recv_ts: int) -> ValidTick:
    """One record -> a valid Tick, or ValueError/InvalidTick with a one-line reason.

    The reference path: every row the fast paths below do not accept plainly comes here,
    so a bad row's verdict and reason are always this function's (and validate_tick's).
    """
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


class _Rows:
    """Per-file parsing state: the clock for ``recv_ts`` and the symbols already checked.

    ``symbols`` maps a raw symbol as written in the file to its checked upper-case form,
    so a plainly valid row costs no string work for its symbol.
    """

    def __init__(self) -> None:
        self.symbols: dict[str, str] = {}
        self.recv_ts = now_ms()
        self._until_clock = _CLOCK_EVERY

    def tick(self) -> None:
        """Count a row; re-read the clock every few hundred rows (well under 1 ms apart
        when unthrottled), not on each one."""
        self._until_clock -= 1
        if not self._until_clock:
            self._until_clock = _CLOCK_EVERY
            self.recv_ts = now_ms()

    def slow(self, record: dict[str, Any]) -> ValidTick | str:
        """The reference verdict for a record; remembers its symbol when it was valid."""
        try:
            tick = row_to_tick(record, self.recv_ts)
        except (ValueError, InvalidTick) as exc:
            return str(exc)
        raw = record["symbol"]
        if len(self.symbols) < _MAX_SYMBOLS and type(raw) is str:
            self.symbols[raw] = tick.symbol
        return tick


def _csv_plain(rows: _Rows, ts: str, symbol: str, price: str, qty: str) -> ValidTick | None:
    """The tick of a plainly valid CSV row (epoch-ms digits, numbers, a known symbol), or
    None: then the row takes the reference path."""
    checked = rows.symbols.get(symbol)
    if checked is None or not ts.isdecimal():
        return None
    try:
        p = float(price)
        q = float(qty) if qty else None
    except ValueError:
        return None
    t = int(ts)
    if not plain_fields_ok(p, q, t, rows.recv_ts):
        return None
    return trusted_tick(checked, p, t, SOURCE, rows.recv_ts, "USD", q)


def _csv_records(lines: Iterator[str], path: Path) -> Iterator[tuple[int, ValidTick | str]]:
    reader = csv.reader(lines)
    header: list[str] = []
    try:
        for fields in reader:
            if any(f.strip() for f in fields):
                header = [f.strip().lower() for f in fields]
                break
    except csv.Error as exc:
        raise _header_error(path, reader.line_num, f"is not valid CSV ({exc})") from None
    if not header:
        raise _header_error(path, reader.line_num, "is missing: the file has no rows")
    absent = [n for n in _REQUIRED if n not in header]
    if absent:
        shown = _shorten(",".join(header), 80)
        raise _header_error(path, reader.line_num, f"{shown!r} lacks {', '.join(absent)}")
    twice = sorted({n for n in header if header.count(n) > 1 and n in (*_REQUIRED, "qty")})
    if twice:
        raise _header_error(path, reader.line_num, f"names {', '.join(twice)} more than once")
    yield from _csv_rows(reader, header)


def _header_error(path: Path, line_no: int, what: str) -> DataError:
    return DataError(
        f"{path}:{line_no}: CSV header {what}",
        hint="the first line must name the columns ts,symbol,price[,qty]",
    )


def _csv_rows(reader: Any, header: list[str]) -> Iterator[tuple[int, ValidTick | str]]:
    """The rows after the header. A row's line number is the line it starts on: a quoted
    field may run over several lines (an unclosed quote swallows the rows after it)."""
    width = len(header)
    i_ts, i_sym, i_price = (header.index(n) for n in _REQUIRED)
    i_qty = header.index("qty") if "qty" in header else -1
    rows = _Rows()
    line = reader.line_num  # the last line read so far
    while True:
        try:
            for fields in reader:
                first, line = line + 1, reader.line_num
                rows.tick()
                if len(fields) == width:
                    qty = fields[i_qty] if i_qty >= 0 else ""
                    tick = _csv_plain(rows, fields[i_ts], fields[i_sym], fields[i_price], qty)
                    if tick is not None:
                        yield first, tick
                        continue
                if not any(f.strip() for f in fields):
                    continue  # a blank line
                if len(fields) != width:
                    item: ValidTick | str = f"{len(fields)} fields, the header has {width}"
                else:
                    item = rows.slow(dict(zip(header, fields, strict=True)))
                if isinstance(item, str) and line > first:
                    item = _runs_on(line, item)
                yield first, item
            return
        except csv.Error as exc:  # the reader goes on with the next line
            first, line = line + 1, reader.line_num
            yield first, _csv_error_reason(exc)


def _runs_on(last_line: int, reason: str) -> str:
    """A bad row stretched over several lines by a quoted field: most likely a quote that
    is never closed, which takes the rows after it into the field."""
    return f"a quoted field opened on this line runs on to line {last_line} (an unclosed quote?): {reason}"


def _csv_error_reason(exc: csv.Error) -> str:
    if "field larger than field limit" in str(exc):
        return f"a field is longer than {csv.field_size_limit():,} characters"
    return f"not valid CSV ({exc})"


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _json_plain(rows: _Rows, obj: dict[str, Any]) -> ValidTick | None:
    """The tick of a plainly valid JSON record (int epoch ms, numbers, a known symbol)."""
    symbol, ts, price, qty = obj.get("symbol"), obj.get("ts"), obj.get("price"), obj.get("qty")
    checked = rows.symbols.get(symbol) if type(symbol) is str else None
    if checked is None or type(ts) is not int:
        return None
    if type(price) is int:
        price = float(price)
    if type(qty) is int:
        qty = float(qty)
    if type(price) is not float or (qty is not None and type(qty) is not float):
        return None
    if not plain_fields_ok(price, qty, ts, rows.recv_ts):
        return None
    return trusted_tick(checked, price, ts, SOURCE, rows.recv_ts, "USD", qty)


def _jsonl_records(lines: Iterator[str]) -> Iterator[tuple[int, ValidTick | str]]:
    rows = _Rows()
    loads, decode_error = orjson.loads, orjson.JSONDecodeError
    for line_no, line in enumerate(lines, start=1):
        rows.tick()
        try:
            obj = loads(line)
        except decode_error as exc:
            if line.strip():
                yield line_no, f"not valid JSON ({exc.msg})"
            continue
        if type(obj) is not dict:
            yield line_no, f"expected a JSON object, got {type(obj).__name__}"
            continue
        yield line_no, _json_plain(rows, obj) or rows.slow(obj)


def read_records(path: Path, fmt: str | None = None) -> Iterator[tuple[int, ValidTick | str]]:
    """(line number, ValidTick or the reason the row is bad), in file order.

    ``recv_ts`` of the ticks is when the row was read. A DataError ends the records when
    the file cannot be read as intended (see the module docstring).
    """
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    with handle:
        head = handle.read(4096).decode("utf-8", "replace").removeprefix(_BOM)
        handle.seek(0)
        kind = fmt or detect_format(path, head)
        lines = text_lines(handle, path)
        yield from _csv_records(lines, path) if kind == "csv" else _jsonl_records(lines)


def text_lines(handle: IO[bytes], path: Path) -> Iterator[str]:
    """The lines of a UTF-8 file, as a text file opened with ``newline=""`` gives them
    (``\n``, ``\r\n`` or ``\r`` ends a line and is kept), without a leading BOM.

    Bytes that are not UTF-8 end the lines with a DataError naming their line and byte
    offset, after every line before them.
    """
    return chain.from_iterable(_line_blocks(handle, path))


def _line_blocks(handle: IO[bytes], path: Path) -> Iterator[list[str]]:
    # Decoding a block at a time keeps the per-line cost in C; each block ends at a line
    # end, so no character and no line is split between two blocks.
    offset = 0  # of the block in the file
    lines_before = 0
    while block := handle.read(_BLOCK):
        if not block.endswith(b"\n"):
            block += handle.readline()
        try:
            text = block.decode("utf-8")
        except UnicodeDecodeError as exc:
            good = _split(block[: exc.start].decode("utf-8"), offset)
            if good and not good[-1].endswith(("\n", "\r")):
                good.pop()  # the start of the bad line
            yield good
            line_no = lines_before + len(good) + 1
            bad = block[exc.start]
            raise DataError(
                f"{path}:{line_no}: not UTF-8 text (byte 0x{bad:02x} at offset {offset + exc.start:,})",
                hint=_UTF8_HINT,
            ) from None
        lines = _split(text, offset)
        yield lines
        offset += len(block)
        lines_before += len(lines)


def _split(text: str, offset: int) -> list[str]:
    if offset == 0 and text.startswith(_BOM):
        text = text[1:]
    return io.StringIO(text, newline="").readlines()


class ReplaySource:
    name = SOURCE

    def __init__(self, config: ReplayConfig) -> None:
        if config.speed < 0:
            raise UsageError("--speed must be >= 0 (0 = as fast as possible)")
        if not config.path.is_file():
            raise UsageError(f"replay file {config.path} does not exist")
        self.config = config
        self.counters = SourceCounters()

    def _bad(self, line_no: int, reason: str) -> None:
        message = f"{self.config.path}:{line_no}: {_shorten(reason, _MAX_REASON)}"
        if self.config.strict:
            raise DataError(f"bad row at {message}", hint="fix the row, or drop --strict to skip it")
        self.counters.invalid += 1
        self.counters.last_problem = message
        log.warning("skipped bad row %s", message)

    def batches(self, stop: StopFlag) -> Iterator[list[ValidTick]]:
        records = read_records(self.config.path, self.config.fmt)
        if self.config.speed > 0:
            return self._paced(records, _Pacer(self.config.speed), stop)
        return self._unpaced(records, stop)

    def _unpaced(
        self, records: Iterator[tuple[int, ValidTick | str]], stop: StopFlag
    ) -> Iterator[list[ValidTick]]:
        out: list[ValidTick] = []
        try:
            for line_no, item in records:
                if isinstance(item, str):
                    self._bad(line_no, item)
                    if stop.is_set():
                        break
                    continue
                out.append(item)
                if len(out) >= _BATCH:
                    yield out
                    out = []
                    if stop.is_set():
                        return
        except DataError:
            if out:
                yield out  # rows accepted before the problem are still produced
            raise
        if out:
            yield out

    def _paced(
        self, records: Iterator[tuple[int, ValidTick | str]], pacer: _Pacer, stop: StopFlag
    ) -> Iterator[list[ValidTick]]:
        out: list[ValidTick] = []
        try:
            for line_no, item in records:
                if stop.is_set():
                    break
                if isinstance(item, str):
                    self._bad(line_no, item)
                    continue
                if pacer.delay_s(item.ts) > 0:
                    if out:
                        yield out
                        out = []
                    if not pacer.wait(item.ts, stop):
                        break
                # Paced rows are spread over real time: each is received now, not at the
                # last of the reader's occasional clock readings (those suit unpaced replay).
                item = ValidTick(item._replace(recv_ts=now_ms()))
                pacer.high_ts = max(pacer.high_ts, item.ts)
                out.append(item)
                if len(out) >= _BATCH:
                    yield out
                    out = []
        except DataError:
            if out:
                yield out  # rows accepted before the problem are still produced
            raise
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
