"""Times: points in time (epoch ms, datetimes, ISO-8601) and durations (``250ms``, ``10s``,
``5m``, ``1h``, ``1d``), parsed and formatted. (Once `durations.py`: it is mostly about
points in time.)"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_UNITS_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_COMPOUND = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
# Longer than any span a point in time can be taken back from now (the tick time range
# starts in 2009); beyond it the arithmetic would leave the datetime range.
MAX_DURATION_MS = 100 * 365 * 86_400_000
_MAX_EPOCH_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z, the last datetime


def parse_duration_ms(text: str) -> int:
    """``"250ms"`` -> 250, ``"1m30s"`` -> 90000, ``"10"`` -> 10000 (bare numbers are seconds).

    Raises ValueError with an example on anything else.
    """
    raw = text.strip().lower()
    match = _DURATION.match(raw)
    if match:
        return _bounded(float(match.group(1)) * _UNITS_MS[match.group(2) or "s"], text)
    parts = _COMPOUND.findall(raw)
    if parts and "".join(n + u for n, u in parts) == raw:
        return _bounded(sum(float(n) * _UNITS_MS[u] for n, u in parts), text)
    raise ValueError(f"invalid duration {text!r}: use e.g. 250ms, 10s, 5m, 1h, 1d or 1h30m")


class DurationTooLong(ValueError):
    """A well-formed duration past MAX_DURATION_MS."""


def _bounded(ms: float, text: str) -> int:
    if not math.isfinite(ms) or ms > MAX_DURATION_MS:
        raise DurationTooLong(f"duration {text.strip()!r} is too long: at most 100 years (36500d)")
    return round(ms)


def datetime_ms(value: datetime) -> int:
    """An aware (or naive = UTC) datetime -> epoch ms, exactly (no float seconds)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - _EPOCH) // _MS


def ms_datetime(ms: int) -> datetime:
    """Epoch ms -> an aware UTC datetime, exactly (the inverse of :func:`datetime_ms`)."""
    return _EPOCH + ms * _MS


def parse_time_ms(text: str, *, now_ms: int) -> int:
    """A point in time: a relative duration back from now (``1h``), ``now``, epoch ms, or ISO-8601.

    A naive ISO timestamp is taken as UTC.
    """
    raw = text.strip()
    if raw.lower() == "now":
        return now_ms
    if raw.isdigit() and len(raw) >= 11:
        if int(raw) > _MAX_EPOCH_MS:
            raise ValueError(f"invalid time {text!r}: epoch milliseconds after the year 9999")
        return int(raw)
    try:
        return now_ms - parse_duration_ms(raw)
    except DurationTooLong:
        raise
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"invalid time {text!r}: use a duration back from now (e.g. 1h, 30m) "
            "or ISO-8601 (e.g. 2026-11-01T00:00:00Z)"
        ) from None
    return datetime_ms(parsed)


def format_duration_ms(ms: float) -> str:
    """Short human form: 850ms, 12.3s, 4m05s, 2h03m."""
    if ms < 1000:
        return f"{ms:.0f}ms"
    s = ms / 1000
    if s < 60:
        return f"{s:.1f}s"
    m, s = divmod(int(s), 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


def iso_utc(ms: int) -> str:
    """Epoch ms -> ISO-8601 UTC with a Z, second precision unless there are milliseconds."""
    dt = ms_datetime(ms)
    text = dt.isoformat(timespec="milliseconds" if ms % 1000 else "seconds")
    return text.replace("+00:00", "Z")


def duration_text(ms: int) -> str:
    """The shortest exact form a duration flag takes: 600000 -> ``10m``, 5400000 ->
    ``1h30m``, 1500 -> ``1500ms`` (parse_duration_ms reads each back to the same value)."""
    if ms <= 0:
        return "0s"
    if ms % 1000:
        return f"{ms}ms"
    parts, rest = [], ms
    for unit in ("w", "d", "h", "m", "s"):
        count, rest = divmod(rest, _UNITS_MS[unit])
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
