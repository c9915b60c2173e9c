import math

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cryptoctl.errors import InvalidTick
from cryptoctl.tick import MAX_TS_MS, MIN_TS_MS, Tick, decode_tick, validate_tick

GOOD = {"v": 1, "symbol": "BTC", "quote": "USD", "price": 97000.5, "qty": 0.25,
        "ts": 1_763_000_000_000, "source": "synthetic", "recv_ts": 1_763_000_000_010}


def test_round_trip_keeps_every_field_and_extras() -> None:
    tick = Tick("ETH", 3100.0, 1_763_000_000_000, "coingecko", 1_763_000_000_500,
                extra={"market_cap": 3.7e11, "change_24h_pct": -1.2})
    obj = orjson.loads(tick.to_json())
    assert obj["v"] == 1 and obj["qty"] is None and obj["market_cap"] == 3.7e11
    assert decode_tick(tick.to_json()) == tick


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"price": 0}, "'price' must be > 0"),
        ({"price": -1.0}, "'price' must be > 0"),
        ({"price": "12"}, "'price' must be a number"),
        ({"price": True}, "'price' must be a number"),
        ({"price": None}, "missing field 'price'"),
        ({"qty": -1}, "'qty' must be >= 0"),
        ({"ts": 1.5e12}, "integer epoch milliseconds"),
        ({"ts": 1_700_000_000}, "not a plausible epoch-ms"),
        ({"symbol": "btc"}, "upper-case"),
        ({"symbol": ""}, "non-empty string"),
        ({"symbol": 5}, "non-empty string"),
        ({"source": None}, "missing field 'source'"),
        ({"v": 2}, "unsupported tick schema version"),
        ({"v": True}, "unsupported tick schema version"),
        ({"symbol": "БТЦ"}, "ASCII"),
        ({"symbol": "ＢＴＣ"}, "ASCII"),
        ({"symbol": "B" * 21}, "1-20 upper-case"),
        ({"quote": "US\x00D"}, "'quote' must be"),
        ({"quote": "ДОЛ"}, "'quote' must be"),
        ({"quote": "ß"}, "'quote' must be"),  # upper-cases to the ASCII "SS"
        ({"quote": "usdı"}, "'quote' must be"),
        ({"quote": 0}, "'quote' must be"),
        ({"quote": ""}, "'quote' must be"),
        ({"source": "synth\x00etic"}, "printable"),
        ({"source": "s" * 65}, "at most 64"),
        ({"note": "a\x00b"}, "NUL"),
        ({"nested": {"k": ["ok", "a\x00"]}}, "NUL"),
        ({"nested": {"k\x00": 1}}, "NUL"),
        ({"price": 1e308}, r"'price' must be < 1e\+15"),
        ({"qty": 1e15}, r"'qty' must be < 1e\+15"),
    ],
)
def test_invalid_fields_are_rejected_with_a_reason(change: dict, reason: str) -> None:
    with pytest.raises(InvalidTick, match=reason):
        validate_tick(GOOD | change)


@pytest.mark.parametrize("raw", [b"", b"{", b"[1,2]", b"null", b'"BTC"', None, b"\xff\xfe"])
def test_undecodable_values(raw: bytes | None) -> None:
    with pytest.raises(InvalidTick):
        decode_tick(raw)


def test_non_finite_numbers_are_rejected() -> None:
    for bad in (math.inf, -math.inf, math.nan):
        with pytest.raises(InvalidTick, match="finite|> 0"):
            validate_tick(GOOD | {"price": bad})


def _reference_valid(obj: dict) -> bool:
    """Brute-force statement of the tick contract in DESIGN.md."""
    price, qty, ts = obj.get("price"), obj.get("qty"), obj.get("ts")
    num = (int, float)
    symbol, source = obj.get("symbol"), obj.get("source")
    ascii_code = set("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
    return (
        isinstance(symbol, str) and 1 <= len(symbol) <= 20 and set(symbol) <= ascii_code
        and isinstance(price, num) and not isinstance(price, bool)
        and math.isfinite(price) and 0 < price < 1e15
        and (qty is None or (isinstance(qty, num) and not isinstance(qty, bool)
                             and math.isfinite(qty) and 0 <= qty < 1e15))
        and isinstance(ts, int) and not isinstance(ts, bool) and MIN_TS_MS <= ts <= MAX_TS_MS
        and isinstance(source, str) and bool(source.strip()) and len(source) <= 64
        and all(c.isprintable() for c in source)
    )


values = st.one_of(
    st.none(), st.booleans(), st.integers(-10, 10**13), st.floats(allow_nan=True),
    st.text(max_size=5), st.text(max_size=70),
    st.sampled_from(["BTC", "ETH", "eth", "B-T", "", "БТЦ", "ＢＴＣ", "X\x00", "A" * 21]),
    st.sampled_from([1e15, 1e308, 999_999_999_999_999.9, 10**15, 10**15 - 1]),
)


@given(st.fixed_dictionaries({}, optional={
    "symbol": values, "price": values, "qty": values, "ts": values, "source": values}))
def test_validation_agrees_with_the_reference(fields: dict) -> None:
    obj = {"v": 1, "recv_ts": 1_763_000_000_000} | fields
    try:
        tick = validate_tick(obj)
    except InvalidTick:
        assert not _reference_valid(obj)
    else:
        assert _reference_valid(obj)
        assert tick.price == float(obj["price"]) and tick.ts == obj["ts"]
