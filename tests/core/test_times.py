from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cryptoctl.times import format_duration_ms, iso_utc, parse_duration_ms, parse_time_ms


@pytest.mark.parametrize(
    ("text", "ms"),
    [("250ms", 250), ("10s", 10_000), ("5m", 300_000), ("1h", 3_600_000), ("1d", 86_400_000),
     ("10", 10_000), ("1.5s", 1_500), ("1h30m", 5_400_000), (" 2m ", 120_000)],
)
def test_parse_duration(text: str, ms: int) -> None:
    assert parse_duration_ms(text) == ms


@pytest.mark.parametrize("text", ["", "abc", "10x", "-5s", "1h30", "m"])
def test_bad_duration_names_an_example(text: str) -> None:
    with pytest.raises(ValueError, match="e.g. 250ms"):
        parse_duration_ms(text)


@given(st.lists(st.tuples(st.integers(0, 999), st.sampled_from(["ms", "s", "m", "h", "d"])),
                min_size=1, max_size=4))
def test_compound_duration_is_the_sum_of_its_parts(parts: list[tuple[int, str]]) -> None:
    unit = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
    text = "".join(f"{n}{u}" for n, u in parts)
    assert parse_duration_ms(text) == sum(n * unit[u] for n, u in parts)


def test_parse_time_relative_iso_epoch() -> None:
    now = 1_763_000_000_000
    assert parse_time_ms("1h", now_ms=now) == now - 3_600_000
    assert parse_time_ms("now", now_ms=now) == now
    assert parse_time_ms("1762000000000", now_ms=now) == 1_762_000_000_000
    expected = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp() * 1000)
    assert parse_time_ms("2026-11-01T00:00:00Z", now_ms=now) == expected
    assert parse_time_ms("2026-11-01T00:00:00", now_ms=now) == expected
    assert parse_time_ms("2026-11-01T01:00:00+01:00", now_ms=now) == expected
    with pytest.raises(ValueError, match="ISO-8601"):
        parse_time_ms("yesterday", now_ms=now)


@given(st.integers(1_230_768_000_000, 4_102_444_800_000))
def test_iso_utc_round_trips(ms: int) -> None:
    assert parse_time_ms(iso_utc(ms), now_ms=0) == ms


def test_format_duration() -> None:
    assert format_duration_ms(850) == "850ms"
    assert format_duration_ms(12_300) == "12.3s"
    assert format_duration_ms(245_000) == "4m05s"
    assert format_duration_ms(7_380_000) == "2h03m"


@given(st.integers(1_230_768_000_000, 4_102_444_800_000))
def test_datetime_ms_is_exact(ms: int) -> None:
    from datetime import timedelta

    from cryptoctl.times import datetime_ms

    aware = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    assert datetime_ms(aware) == ms
    assert datetime_ms(aware.replace(tzinfo=None)) == ms


@pytest.mark.parametrize("text", ["99999999999999999999d", "36501d", "1" + "0" * 400 + "s"])
def test_a_duration_past_100_years_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="too long"):
        parse_duration_ms(text)


def test_an_epoch_past_year_9999_is_refused() -> None:
    with pytest.raises(ValueError, match="after the year 9999"):
        parse_time_ms("999999999999999999", now_ms=0)
    assert parse_time_ms("253402300799999", now_ms=0) == 253_402_300_799_999
