"""The aggregator's fast tick path applies exactly the rules of validate_tick."""

from __future__ import annotations

import math

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from cryptoctl.errors import InvalidTick
from cryptoctl.tick import Tick, fast_tick_fields, validate_tick

TS = 1_704_067_200_000
anything = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=True),
    st.text(max_size=6), st.sampled_from(["BTC", "usd", "USD", " ", "", "eth1", "X-Y"]),
    st.sampled_from(["БТЦ", "ＢＴＣ", "A" * 21, "A" * 20, "s\x00", "s" * 65, "\u00e9"]),
    st.sampled_from([1e15, 1e308, 10**15, 10**15 - 1, 999_999_999_999_999.9]),
    st.just([]), st.just({}),
)
# field -> a plausible value (drawn 90% of the time) or anything at all
plausible = {
    "v": st.just(1),
    "symbol": st.sampled_from(["BTC", "ETH", "SOL2"]),
    "quote": st.just("USD"),
    "price": st.one_of(st.floats(0.001, 1e9), st.integers(1, 10**6)),
    "qty": st.one_of(st.none(), st.floats(0, 1e6), st.integers(0, 100)),
    "ts": st.integers(TS, TS + 10**9),
    "source": st.just("synthetic"),
    "recv_ts": st.integers(TS, TS + 10**9),
}


@st.composite
def objects(draw):
    obj = {}
    for key, strategy in plausible.items():
        if draw(st.integers(0, 19)) > 0:  # mostly present
            obj[key] = draw(strategy if draw(st.integers(0, 9)) > 0 else anything)
    if draw(st.booleans()):  # an exchange trade: trade_id and side, mostly plausible
        obj["trade_id"] = draw(st.integers(0, 2**63 - 1) if draw(st.integers(0, 9)) else anything)
        if draw(st.integers(0, 9)):
            sides = st.sampled_from(["buy", "sell", None])
            obj["side"] = draw(sides if draw(st.integers(0, 9)) else anything)
    if draw(st.integers(0, 9)) == 0:
        obj["market_cap"] = draw(anything)
    return obj


def verdict(obj) -> Tick | str:
    try:
        return validate_tick(obj)
    except InvalidTick as exc:
        return exc.reason


@settings(max_examples=3000, deadline=None)
@given(objects())
def test_fast_path_agrees_with_validate_tick(obj):
    obj = orjson.loads(orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS)) if all(
        not (isinstance(v, float) and not math.isfinite(v)) for v in obj.values()
    ) else obj
    fast = fast_tick_fields(obj)
    slow = verdict(obj)
    if fast is None:
        return  # the caller falls back to validate_tick: same verdict by construction
    assert isinstance(slow, Tick), f"fast path accepted what validate_tick rejects: {slow}"
    assert fast == slow  # a Tick is a TickRow: same fields, same order
    _symbol, price, _ts, _source, _recv_ts, _quote, qty, _extra, trade_id, _side = fast
    assert trade_id is None or type(trade_id) is int
    assert all(type(x) is float for x in (price, *([qty] if qty is not None else [])))


def test_fast_path_takes_the_producers_ticks():
    tick = Tick("BTC", 65000.5, TS, "synthetic", TS + 3, qty=0.25)
    assert fast_tick_fields(orjson.loads(tick.to_json())) == tick
    quote = Tick("BTC", 65000, TS, "coingecko", TS, qty=None)
    row = fast_tick_fields(orjson.loads(quote.to_json()))
    assert row is not None
    _symbol, price, _ts, _source, _recv_ts, _quote, qty, _extra, _trade_id, _side = row
    assert (price, qty) == (65000.0, None)
    trade = Tick("BTC", 65000.5, TS, "binance", TS + 3, "USDT", 0.25, trade_id=7, side="sell")
    assert fast_tick_fields(orjson.loads(trade.to_json())) == trade
    assert orjson.loads(quote.to_json()).keys() == {
        "v", "symbol", "quote", "price", "qty", "ts", "source", "recv_ts"
    }  # a quote's JSON is what it always was


def test_trade_fields_are_validated():
    base = orjson.loads(Tick("BTC", 1.0, TS, "binance", TS, "USDT", 1.0, trade_id=1, side="buy").to_json())
    for bad in ({"trade_id": -1}, {"trade_id": 2**63}, {"trade_id": True}, {"trade_id": 1.5},
                {"trade_id": ""}, {"side": "BUY"}, {"side": 1}):
        assert isinstance(verdict(base | bad), str), bad
    assert validate_tick(base | {"trade_id": "abc-1"}).trade_id == "abc-1"
    assert validate_tick(base | {"side": None}).side is None
