"""JSON and CSV numbers: sums without float noise, prices exact, never NaN or Infinity."""

from __future__ import annotations

import csv
import io
import json
import math
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from cryptoctl.db.queries import CandleRow, LatestPrice, Stats24h
from cryptoctl.render.serialize import (
    CANDLE_FIELDS,
    PRICE_FIELDS,
    STATS_FIELDS,
    candle_record,
    price_record,
    stats_record,
    to_csv,
    to_json,
)

T0 = 1_793_491_200_000  # 2026-11-01T00:00:00Z

# Quantities as exchanges give them: up to 6 decimals, up to 1000.
QTY_MICROS = st.integers(min_value=1, max_value=1_000_000_000)


def candle_with(volume: float, avg: float | None = 1.0, vwap: float | None = 1.0) -> CandleRow:
    return CandleRow("binance", "BTC", "USDT", "5m", T0, 65001.27, 65013.43, 64922.09, 64937.68, volume,
                     376, avg, vwap, False)


def test_the_sum_from_the_usage_docs_prints_without_noise() -> None:
    text = to_json([candle_record(candle_with(30.90986899999999, 64951.91348404252))])
    assert '"volume": 30.909869,' in text
    assert '"avg": 64951.913484,' in text
    row = to_csv([candle_record(candle_with(482.5957369999997))], CANDLE_FIELDS)
    assert ",482.595737," in row


@given(st.lists(QTY_MICROS, min_size=1, max_size=300))
def test_a_sum_of_decimal_values_prints_as_the_exact_decimal_sum(micros: list[int]) -> None:
    total = 0.0
    for m in micros:  # summed in floats, one by one, as PostgreSQL's sum() does
        total += m / 1_000_000
    exact = sum(Decimal(m) / 1_000_000 for m in micros)
    record = candle_record(candle_with(total))
    printed = json.loads(to_json([record]), parse_float=Decimal)[0]["volume"]
    assert printed == exact
    field = next(csv.DictReader(io.StringIO(to_csv([record], CANDLE_FIELDS))))["volume"]
    assert Decimal(field) == exact


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_rounding_round_trips_within_12_significant_digits(value: float) -> None:
    shown = json.loads(to_json([candle_record(candle_with(value))]))[0]["volume"]
    assert math.isclose(shown, value, rel_tol=5e-12, abs_tol=0.0) or value == shown
    assert json.loads(json.dumps(shown)) == shown
    assert len(repr(abs(shown)).split("e")[0].replace(".", "").strip("0")) <= 12


def test_prices_keep_all_their_digits() -> None:
    tiny = price_record(LatestPrice("PEPE", 0.00002200, T0, "redis", "binance", "USDT"))
    assert json.loads(to_json([tiny]))[0]["price"] == 0.000022
    assert to_csv([tiny], PRICE_FIELDS).splitlines()[1].startswith("PEPE,USDT,binance,2.2e-05,")
    precise = 67012.123456789012  # more digits than a sum is printed with
    assert json.loads(to_json([price_record(LatestPrice("BTC", precise, T0, "redis"))]))[0][
        "price"
    ] == precise


def test_nan_and_infinity_are_null_in_json_and_empty_in_csv() -> None:
    nan, inf = float("nan"), float("inf")
    record = candle_record(
        CandleRow("binance", "BTC", "USDT", "1m", T0, nan, inf, -inf, 1.0, nan, 1, inf, nan, True))
    text = to_json([record])
    assert "NaN" not in text and "Infinity" not in text
    parsed = json.loads(text)[0]
    for name in ("open", "high", "low", "volume", "avg", "vwap"):
        assert parsed[name] is None, name
    assert parsed["close"] == 1.0
    row = to_csv([record], CANDLE_FIELDS).splitlines()[1]
    assert row == "BTC,USDT,binance,1m,2026-11-01T00:00:00Z,,,,1.0,,1,,,true,true"
    stats = stats_record(Stats24h("coinbase", "ETH", "USD", 1.0, 2.0, 0.5, nan, inf, nan, 7, T0, T0))
    assert json.loads(to_json([stats]))[0]["change_pct"] is None
    assert to_csv([stats], STATS_FIELDS).count(",,") == 2
    # Records built elsewhere (or raw dicts) are cleaned too.
    assert json.loads(to_json([{"x": nan, "y": [inf, 1.5]}])) == [{"x": None, "y": [None, 1.5]}]
