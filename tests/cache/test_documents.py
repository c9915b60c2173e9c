"""The cache documents: what the writer encodes, the reader decodes back exactly; anything
else decodes to None."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cryptoctl.cache.documents import CandleDoc, LatestDoc
from cryptoctl.tick import MAX_TS_MS, MIN_TS_MS
from cryptoctl.windows import Candle

TIMES = st.integers(MIN_TS_MS, MAX_TS_MS)
PRICES = st.floats(min_value=1e-12, max_value=1e12, allow_nan=False)
AMOUNTS = st.floats(min_value=0, max_value=1e12, allow_nan=False)
NAMES = st.none() | st.text(min_size=1, max_size=12)

CANDLE_DOCS = st.builds(
    CandleDoc,
    symbol=st.text(min_size=1, max_size=12), bucket_ms=TIMES, open=PRICES, high=PRICES,
    low=PRICES, close=PRICES, volume=AMOUNTS, trades=st.integers(1, 10**9), avg=PRICES,
    vwap=st.none() | PRICES, open_ts=TIMES, close_ts=TIMES,
    state=st.sampled_from(["open", "closed", "final"]), final=st.booleans(),
    source=NAMES, quote=NAMES,
)  # fmt: skip
LATEST_DOCS = st.builds(
    LatestDoc, symbol=st.text(min_size=1, max_size=12), price=PRICES, ts=TIMES, source=NAMES,
    quote=NAMES,
)
T0 = 1_763_000_000_000


@given(CANDLE_DOCS)
def test_a_candle_doc_round_trips(doc: CandleDoc) -> None:
    assert CandleDoc.from_json(doc.to_json()) == doc
    assert CandleDoc.from_json(doc.to_json().decode()) == doc  # as a decoding client reads it


@given(LATEST_DOCS)
def test_a_latest_doc_round_trips(doc: LatestDoc) -> None:
    assert LatestDoc.from_json(doc.to_json()) == doc


@given(CANDLE_DOCS)
def test_one_kind_of_document_is_never_read_as_the_other(doc: CandleDoc) -> None:
    latest = LatestDoc.of_candle(doc)
    assert LatestDoc.from_json(doc.to_json()) is None
    assert CandleDoc.from_json(latest.to_json()) is None


def test_from_candle_names_the_state() -> None:
    c = Candle("BTC", T0, 1.0, 2.0, 0.5, 1.5, 0.0, 4, 5.0, 0.0, T0 + 1, T0 + 9)
    assert CandleDoc.from_candle(c, closed=False).state == "open"
    assert CandleDoc.from_candle(c, closed=True).state == "closed"
    c.final = True
    doc = CandleDoc.from_candle(c, closed=True)
    assert (doc.state, doc.final, doc.avg, doc.vwap) == ("final", True, 1.25, None)
    assert (doc.source, doc.quote) == ("", "USD")  # the candle's market (a Candle's defaults)
    c.source, c.quote = "binance", "USDT"
    assert CandleDoc.from_candle(c, closed=True)[-2:] == ("binance", "USDT")


def test_a_document_of_an_older_release_reads_without_source_and_quote() -> None:
    old = {"symbol": "BTC", "bucket_ms": T0, "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0,
           "volume": 0.0, "trades": 1, "avg": 1.0, "vwap": None, "open_ts": T0, "close_ts": T0,
           "state": "open", "final": False}  # fmt: skip
    doc = CandleDoc.from_json(orjson.dumps(old))
    assert doc is not None and (doc.source, doc.quote) == (None, None)
    assert LatestDoc.from_json(b'{"symbol":"BTC","price":91.5,"ts":%d}' % T0) == LatestDoc(
        "BTC", 91.5, T0
    )


GOOD_CANDLE = json.loads(
    CandleDoc("BTC", T0, 1.0, 2.0, 0.5, 1.5, 3.0, 4, 1.2, 1.3, T0, T0 + 1, "open", False).to_json()
)
FOREIGN = [
    None, b"", b"not json", b"67000.5", b"[1, 2]", b'"text"', b"null", b"{}",
    json.dumps({"price": 67000.5}).encode(),  # no symbol, no time
    json.dumps({"symbol": "BTC", "price": "67000.5", "ts": T0}).encode(),  # price as text
    json.dumps({"symbol": "BTC", "price": 1.0, "ts": T0 // 1000}).encode(),  # seconds
    json.dumps({"symbol": "BTC", "price": 1.0, "ts": "2026-11-01T00:00:00Z"}).encode(),  # ISO
    json.dumps({"symbol": "BTC", "price": 1.0, "ts": True}).encode(),
    json.dumps({"symbol": "BTC", "price": True, "ts": T0}).encode(),
    json.dumps({"symbol": 7, "price": 1.0, "ts": T0}).encode(),
    json.dumps({"symbol": "BTC", "price": 1.0, "ts": T0, "source": 3}).encode(),
]
BROKEN_CANDLES = [
    GOOD_CANDLE | {"close": "1.5"},
    GOOD_CANDLE | {"bucket_ms": T0 // 1000},  # seconds
    GOOD_CANDLE | {"bucket_ms": float(T0)},
    GOOD_CANDLE | {"trades": 4.0},
    GOOD_CANDLE | {"trades": True},
    GOOD_CANDLE | {"state": "half-open"},
    GOOD_CANDLE | {"final": 0},
    GOOD_CANDLE | {"vwap": "n/a"},
    GOOD_CANDLE | {"quote": 1},
    {k: v for k, v in GOOD_CANDLE.items() if k != "close"},
]


@pytest.mark.parametrize("raw", FOREIGN + [json.dumps(d).encode() for d in BROKEN_CANDLES])
def test_what_the_writer_does_not_write_reads_as_none(raw: bytes | None) -> None:
    assert CandleDoc.from_json(raw) is None
    assert LatestDoc.from_json(raw) is None


def test_the_good_candle_of_those_tests_does_read() -> None:
    assert CandleDoc.from_json(json.dumps(GOOD_CANDLE)) is not None  # so each case tests one thing
