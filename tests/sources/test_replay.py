from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cryptoctl.errors import DataError
from cryptoctl.sources.replay import ReplayConfig, ReplaySource, parse_ts, read_records
from cryptoctl.tick import MAX_TS_MS, MIN_TS_MS


def drain(src: ReplaySource) -> list:
    return [t for batch in src.batches(threading.Event()) for t in batch]


def test_csv_with_iso_and_epoch_ms_keeps_file_order(tmp_path: Path) -> None:
    path = tmp_path / "ticks.csv"
    path.write_text(
        "ts,symbol,price,qty\n"
        "1700000060000,BTC,65000.5,0.1\n"
        "2023-11-14T22:13:20Z,eth,3200,\n"
        "1700000000000,BTC,64990,0.2\n"
    )
    ticks = drain(ReplaySource(ReplayConfig(path, speed=0)))
    assert [(t.ts, t.symbol, t.price, t.qty) for t in ticks] == [
        (1700000060000, "BTC", 65000.5, 0.1),
        (1700000000000, "ETH", 3200.0, None),
        (1700000000000, "BTC", 64990.0, 0.2),
    ]
    assert {t.source for t in ticks} == {"replay"}


def test_jsonl_bad_rows_are_skipped_counted_and_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "ticks.jsonl"
    path.write_text(
        '{"ts": 1700000000000, "symbol": "BTC", "price": 1.5}\n'
        "not json\n"
        '{"ts": "2023-11-14T22:13:20.250+00:00", "symbol": "ETH", "price": 2, "qty": 3}\n'
        '{"ts": 1700000000000, "symbol": "BTC", "price": -1}\n'
        "\n"
        '{"ts": "yesterday", "symbol": "BTC", "price": 1}\n'
    )
    src = ReplaySource(ReplayConfig(path, speed=0))
    ticks = drain(src)
    assert [(t.symbol, t.ts) for t in ticks] == [("BTC", 1700000000000), ("ETH", 1700000000250)]
    assert src.counters.invalid == 3
    lines = [r.getMessage() for r in caplog.records]
    assert any("ticks.jsonl:2:" in m for m in lines)
    assert any("ticks.jsonl:4:" in m and "price" in m for m in lines)
    assert any("ticks.jsonl:6:" in m for m in lines)


def test_strict_stops_at_the_first_bad_row(tmp_path: Path) -> None:
    path = tmp_path / "ticks.csv"
    path.write_text("ts,symbol,price\n1700000000000,BTC,1\n1700000000000,BTC,abc\n")
    with pytest.raises(DataError, match=r"ticks\.csv:3: price 'abc' is not a number"):
        drain(ReplaySource(ReplayConfig(path, speed=0, strict=True)))


def test_format_detected_by_content(tmp_path: Path) -> None:
    path = tmp_path / "ticks.txt"
    path.write_text('{"ts": 1700000000000, "symbol": "BTC", "price": 1}\n')
    assert len(drain(ReplaySource(ReplayConfig(path, speed=0)))) == 1
    path.write_text("ts,symbol,price\n1700000000000,BTC,1\n")
    assert len(drain(ReplaySource(ReplayConfig(path, speed=0)))) == 1


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("time,coin,value\n1,BTC,2\n", r"ticks\.csv:1: CSV header 'time,coin,value' lacks ts, symbol, price"),
        ("\n\nts,symbol\n1,BTC\n", r"ticks\.csv:3: CSV header 'ts,symbol' lacks price"),
        ("1700000000000,BTC,1\n", r"ticks\.csv:1: CSV header '1700000000000,btc,1' lacks ts"),
        ("ts,symbol,price,ts\n1,BTC,2,3\n", r"ticks\.csv:1: CSV header names ts more than once"),
        ("", r"ticks\.csv:0: CSV header is missing: the file has no rows"),
        (" \n\n", r"ticks\.csv:2: CSV header is missing"),
    ],
)
def test_a_bad_csv_header_is_a_data_error(tmp_path: Path, text: str, needle: str) -> None:
    # Not one skipped "row" after which the replay produces nothing and exits 0.
    path = tmp_path / "ticks.csv"
    path.write_text(text)
    for strict in (False, True):
        with pytest.raises(DataError, match=needle) as caught:
            drain(ReplaySource(ReplayConfig(path, speed=0, strict=strict)))
        assert "ts,symbol,price[,qty]" in str(caught.value)


CSV_BODY = "ts,symbol,price\n1700000000000,BTC,1\n"
JSONL_BODY = '{"ts": 1700000000000, "symbol": "BTC", "price": 1}\n'


@pytest.mark.parametrize(
    ("name", "body"),
    [("ticks.csv", CSV_BODY), ("ticks.jsonl", JSONL_BODY), ("csv.txt", CSV_BODY), ("jsonl.txt", JSONL_BODY)],
)
def test_a_utf8_bom_is_dropped(tmp_path: Path, name: str, body: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"\xef\xbb\xbf" + body.encode())
    src = ReplaySource(ReplayConfig(path, speed=0, strict=True))
    assert [(t.ts, t.symbol, t.price) for t in drain(src)] == [(1700000000000, "BTC", 1.0)]


def test_a_field_over_the_csv_limit_is_a_bad_row(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import csv

    huge = "9" * (csv.field_size_limit() + 1)
    path = tmp_path / "ticks.csv"
    path.write_text(f"ts,symbol,price\n1700000000000,BTC,1\n1700000000000,BTC,{huge}\n1700000000001,ETH,2\n")
    src = ReplaySource(ReplayConfig(path, speed=0))
    assert [t.symbol for t in drain(src)] == ["BTC", "ETH"]
    assert src.counters.invalid == 1
    assert src.counters.last_problem == f"{path}:3: a field is longer than 131,072 characters"
    with pytest.raises(DataError, match=r"ticks\.csv:3: a field is longer than 131,072 characters"):
        drain(ReplaySource(ReplayConfig(path, speed=0, strict=True)))


def test_an_unclosed_quote_is_reported_where_it_opens(tmp_path: Path) -> None:
    path = tmp_path / "ticks.csv"
    path.write_text(
        "ts,symbol,price\n"
        "1700000000000,BTC,1\n"
        '1700000000000,"BTC,2\n'  # line 3: the quote is never closed
        "1700000001000,ETH,3\n"
        "1700000002000,ETH,4\n"
    )
    assert [(line, item) for line, item in read_records(path) if isinstance(item, str)] == [
        (3, "a quoted field opened on this line runs on to line 5 (an unclosed quote?): "
            "2 fields, the header has 3"),
    ]  # fmt: skip
    with pytest.raises(DataError, match=r"ticks\.csv:3: a quoted field opened on this line"):
        drain(ReplaySource(ReplayConfig(path, speed=0, strict=True)))


def test_a_quoted_field_over_lines_keeps_the_next_rows_numbers(tmp_path: Path) -> None:
    path = tmp_path / "ticks.csv"
    path.write_text(
        "ts,symbol,price,note\n"
        '1700000000000,BTC,1,"two\nlines"\n'  # lines 2-3: valid CSV and a valid row
        "1700000000000,BTC,-1,\n"  # line 4
    )
    items = list(read_records(path))
    assert [line for line, _ in items] == [2, 4]
    assert isinstance(items[1][1], str) and "price" in items[1][1]


def test_speed_scales_the_recorded_pace(tmp_path: Path) -> None:
    path = tmp_path / "ticks.csv"
    rows = [f"{1700000000000 + i * 100},BTC,{i + 1}" for i in range(11)]  # 1 s recorded
    path.write_text("ts,symbol,price\n" + "\n".join(rows) + "\n")
    ticks = drain(ReplaySource(ReplayConfig(path, speed=10)))
    # recv_ts is taken when each row is due: about 100 ms apart in total at 10x.
    assert 80 <= ticks[-1].recv_ts - ticks[0].recv_ts <= 1000


# --- property: the parser agrees with a simple reference ------------------------------

ts_ms = st.integers(MIN_TS_MS, MAX_TS_MS - 1)
symbols = st.text("ABCDEFXYZ019", min_size=1, max_size=5)
prices = st.one_of(st.floats(min_value=1e-9, max_value=1e9, allow_nan=False), st.sampled_from([0.0, -1.0]))
qtys = st.one_of(st.none(), st.floats(min_value=0, max_value=1e6, allow_nan=False))
rows = st.lists(st.tuples(ts_ms, symbols, prices, qtys, st.booleans()), min_size=1, max_size=30)


def reference(row: tuple) -> tuple | None:
    ts, symbol, price, qty, _iso = row
    return None if price <= 0 else (ts, symbol, price, qty)


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


@given(rows=rows)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_csv_and_jsonl_agree_with_the_reference(tmp_path: Path, rows: list) -> None:
    import orjson

    csv_lines = ["ts,symbol,price,qty"]
    json_lines = []
    for ts, symbol, price, qty, as_iso in rows:
        stamp = iso(ts) if as_iso else str(ts)
        csv_lines.append(f"{stamp},{symbol},{price!r},{'' if qty is None else repr(qty)}")
        obj = {"ts": stamp if as_iso else ts, "symbol": symbol, "price": price, "qty": qty}
        json_lines.append(orjson.dumps(obj).decode())
    expected = [reference(r) for r in rows]
    for name, text in (("r.csv", "\n".join(csv_lines)), ("r.jsonl", "\n".join(json_lines))):
        path = tmp_path / name
        path.write_text(text + "\n")
        got = [
            None if isinstance(item, str) else (item.ts, item.symbol, item.price, item.qty)
            for _, item in read_records(path)
        ]
        assert got == expected


@given(ms=ts_ms)
def test_iso_and_epoch_forms_give_the_same_time(ms: int) -> None:
    assert parse_ts(iso(ms)) == ms == parse_ts(str(ms)) == parse_ts(iso(ms).replace("+00:00", "Z"))


# --- property: the fast row paths give exactly the reference verdict -------------------
# read_records takes a cheap path for plainly valid rows; anything else goes to
# row_to_tick (and so validate_tick). Whatever the cells, both must agree on every row:
# valid or not, the same tick, the same reason.

CSV_TS = ["1700000000000", " 1700000000000", "1700000000000 ", "-5", "0", "1_700_000_000_000",
          "2023-11-14T22:13:20Z", "1.7e12", "", "abc", "١٧٠٠٠٠٠٠٠٠٠٠٠", "99999999999999999",
          "4102444800000", "4102444800001", "1230768000000", "1230767999999"]  # fmt: skip
CSV_SYMBOLS = ["BTC", "btc", " ETH ", "", "B-TC", "ß", "ǆ", "SOL1", "x y", "\tDOGE"]
CSV_NUMBERS = ["1", "1.5", "-1", "0", "-0.0", "nan", "inf", "-inf", "1e3", " 2 ", "abc", "",
               "1_000", "1e400", "0x10", "  "]  # fmt: skip
cells = st.tuples(
    st.one_of(st.sampled_from(CSV_TS), ts_ms.map(str)),
    st.sampled_from(CSV_SYMBOLS),
    st.one_of(st.sampled_from(CSV_NUMBERS), st.floats(allow_nan=False).map(repr)),
    st.one_of(st.sampled_from(CSV_NUMBERS), st.floats(allow_nan=False).map(repr)),
)


def verdict(item: object) -> object:
    """A tick without its receive time (taken when read), or the reason as is."""
    return item if isinstance(item, str) else item.to_dict() | {"recv_ts": 0}  # type: ignore[attr-defined]


def reference_verdict(record: dict) -> object:
    from cryptoctl.errors import InvalidTick
    from cryptoctl.sources.replay import row_to_tick

    try:
        return verdict(row_to_tick(record, MIN_TS_MS))
    except (ValueError, InvalidTick) as exc:
        return str(exc)


@given(rows=st.lists(cells, min_size=1, max_size=40))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_csv_fast_path_gives_the_reference_verdict(tmp_path: Path, rows: list) -> None:
    import csv

    path = tmp_path / "r.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(["ts", "symbol", "price", "qty"])
        out.writerows(rows)
    expected = [
        (line, reference_verdict(dict(zip(("ts", "symbol", "price", "qty"), row, strict=True))))
        for line, row in enumerate(rows, start=2)
        if any(cell.strip() for cell in row)  # an all-blank row is skipped as a blank line
    ]
    assert [(line, verdict(item)) for line, item in read_records(path)] == expected


json_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    ts_ms,
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(CSV_TS + CSV_SYMBOLS + ["BTC", "ETH"]),
)
records = st.fixed_dictionaries(
    {},
    optional={
        "ts": st.one_of(ts_ms, json_values),
        "symbol": st.one_of(st.sampled_from(CSV_SYMBOLS), json_values),
        "price": st.one_of(st.floats(1e-9, 1e9), json_values),
        "qty": json_values,
        "note": json_values,
    },
)


@given(objs=st.lists(records, min_size=1, max_size=40))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_jsonl_fast_path_gives_the_reference_verdict(tmp_path: Path, objs: list) -> None:
    import orjson

    path = tmp_path / "r.jsonl"
    path.write_bytes(b"".join(orjson.dumps(o) + b"\n" for o in objs))
    expected = [(line, reference_verdict(o)) for line, o in enumerate(objs, start=1)]
    assert [(line, verdict(item)) for line, item in read_records(path)] == expected


@pytest.mark.parametrize("speed", [0, 1000])
@pytest.mark.parametrize(("rows", "at"), [(0, 0), (3, 0), (3, 2), (20_000, 5)])
def test_bytes_that_are_not_utf8_stop_at_their_line_after_the_rows_before(
    tmp_path: Path, rows: int, at: int, speed: float
) -> None:
    """Rows before the bad line are produced (in several blocks for a long file), then a
    DataError names the line and byte offset, whatever --strict says."""
    path = tmp_path / "ticks.csv"
    good = b"ts,symbol,price\n" + b"".join(b"%d,BTC,1\n" % (1700000000000 + i) for i in range(rows))
    bad_line = b"1700000000000,BTC,1\n"
    data = good + bad_line[:at] + b"\xff\xfe" + bad_line[at:] + b"1700000000000,ETH,1\n"
    path.write_bytes(data)
    src = ReplaySource(ReplayConfig(path, speed=speed))
    ticks: list = []
    with pytest.raises(DataError) as caught:
        for batch in src.batches(threading.Event()):
            ticks.extend(batch)
    assert len(ticks) == rows and {t.symbol for t in ticks} <= {"BTC"}
    assert caught.value.message == (
        f"{path}:{rows + 2}: not UTF-8 text (byte 0xff at offset {len(good) + at:,})"
    )
    assert "utf-8" in (caught.value.hint or "")


def test_bytes_that_are_not_utf8_in_jsonl_name_their_line(tmp_path: Path) -> None:
    path = tmp_path / "ticks.jsonl"
    path.write_bytes(b'{"ts": 1700000000000, "symbol": "BTC", "price": 1}\r\n{"symbol": "\xe9"}\n')
    with pytest.raises(DataError, match=r"ticks\.jsonl:2: not UTF-8 text \(byte 0xe9 at offset 64\)"):
        list(read_records(path))


@pytest.mark.parametrize("block", [1, 2, 7, 1 << 18])
def test_lines_are_split_like_a_text_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: int
) -> None:
    import io

    from cryptoctl.sources import replay

    monkeypatch.setattr(replay, "_BLOCK", block)
    text = "\ufeffa\r\nb\rc\n\n\u2028d\x0cé\r\n\r" * 500 + "last"
    path = tmp_path / "lines.txt"
    path.write_bytes(text.encode())
    with path.open("rb") as handle:
        got = list(replay.text_lines(handle, path))
    assert got == io.StringIO(text[1:], newline="").readlines()


def test_paced_rows_are_received_in_order(tmp_path: Path) -> None:
    # Ties and rows that need no wait come between rows that do: recv_ts never runs back.
    rows = ["ts,symbol,price"] + [
        f"{1_763_000_000_000 + (i // 3) * 200},BTC,{100 + i}" for i in range(30)
    ]
    path = tmp_path / "paced.csv"
    path.write_text("\n".join(rows) + "\n")
    ticks = drain(ReplaySource(ReplayConfig(path, speed=10)))
    received = [t.recv_ts for t in ticks]
    assert len(ticks) == 30
    assert received == sorted(received)
    assert received[-1] - received[0] >= 150  # 9 waits of 20 ms: spread over real time
