"""Each exchange's WebSocket frames -> events, against this file's own encoders of the
formats in EXCHANGES.md (the brute-force reference): generated trades go out as frames
and must come back exactly, microsecond times floored; anything else never raises.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cryptoctl.exchanges import binance, coinbase, kraken
from cryptoctl.exchanges.trade import Market, Trade
from cryptoctl.exchanges.wire import Control, Event, Garbage, TradeEvent

EPOCH = datetime(1970, 1, 1)
MIN_US, MAX_US = 1_500_000_000 * 10**6, 2_000_000_000 * 10**6

# --- generated trades ----------------------------------------------------------------

# Times anywhere, and many within 1.5 ms of a minute's edge (where rounding would move
# a trade into the next minute).
edge_us = st.builds(
    lambda minute, offset: minute * 60_000_000 + offset,
    st.integers(MIN_US // 60_000_000, MAX_US // 60_000_000),
    st.integers(-1500, 1500),
)
times_us = st.one_of(st.integers(MIN_US, MAX_US), edge_us)
decimals = st.decimals(
    min_value=Decimal("0.00000001"), max_value=Decimal("10000000"), places=8, allow_nan=False
).map(lambda d: f"{d:f}")
sides = st.sampled_from(["buy", "sell"])


class Gen:
    """One generated trade: the exchange's raw values and what must come out."""

    def __init__(self, market: int, trade_id: int, us: int, price: str, qty: str, side: str) -> None:
        self.market, self.trade_id, self.us = market, trade_id, us
        self.price, self.qty, self.side = price, qty, side

    def expected(self, ms: int | None = None) -> Trade:
        floor_ms = self.us // 1000 if ms is None else ms
        return Trade(self.trade_id, floor_ms, float(self.price), float(self.qty), self.side)  # type: ignore[arg-type]


gens = st.builds(Gen, st.integers(0, 2), st.integers(0, 2**53), times_us, decimals, decimals, sides)


def iso(us: int) -> str:
    return (EPOCH + timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


BINANCE_MARKETS = [
    Market("binance", "BTC", "USDT"),
    Market("binance", "ETH", "USDT"),
    Market("binance", "SOL", "BTC"),
]
COINBASE_MARKETS = [
    Market("coinbase", "BTC", "USD"),
    Market("coinbase", "ETH", "USD"),
    Market("coinbase", "ETH", "BTC"),
]
KRAKEN_MARKETS = [
    Market("kraken", "BTC", "USD"),
    Market("kraken", "ETH", "USD"),
    Market("kraken", "DOGE", "USD"),
]


# --- the reference encoders ----------------------------------------------------------


def binance_frame(g: Gen, combined: bool = True) -> str:
    m = BINANCE_MARKETS[g.market]
    symbol = f"{m.symbol}{m.quote}"
    ms = g.us // 1000
    data = {"e": "trade", "E": ms + 3, "s": symbol, "t": g.trade_id, "p": g.price, "q": g.qty,
            "T": ms, "m": g.side == "sell", "M": True}  # fmt: skip
    return json.dumps({"stream": f"{symbol.lower()}@trade", "data": data} if combined else data)


def coinbase_frame(g: Gen, kind: str = "match") -> str:
    m = COINBASE_MARKETS[g.market]
    return json.dumps({
        "type": kind, "trade_id": g.trade_id, "maker_order_id": "a1", "taker_order_id": "b2",
        "side": "sell" if g.side == "buy" else "buy",  # the maker's side
        "size": g.qty, "price": g.price, "product_id": f"{m.symbol}-{m.quote}",
        "sequence": 50 + g.trade_id, "time": iso(g.us),
    })  # fmt: skip


def kraken_frame(batch: list[Gen]) -> str:
    entries = []
    for g in batch:
        m = KRAKEN_MARKETS[g.market]
        # price and qty as JSON numbers, written from the decimal text itself
        entries.append(
            f'{{"symbol":"{m.symbol}/{m.quote}","side":"{g.side}","price":{g.price},'
            f'"qty":{g.qty},"ord_type":"limit","trade_id":{g.trade_id},"timestamp":"{iso(g.us)}"}}'
        )
    return f'{{"channel":"trade","type":"update","data":[{",".join(entries)}]}}'


# --- properties ----------------------------------------------------------------------


@given(st.lists(gens, max_size=20), st.booleans())
def test_binance_trades_come_back_exactly(batch: list[Gen], combined: bool) -> None:
    wire = binance.WIRE.for_markets(BINANCE_MARKETS)
    events = [e for g in batch for e in wire.parse(binance_frame(g, combined))]
    assert events == [TradeEvent(BINANCE_MARKETS[g.market], g.expected()) for g in batch]


@given(st.lists(gens, max_size=20), st.sampled_from(["match", "last_match"]))
def test_coinbase_matches_come_back_with_the_taker_side_and_floored_ms(batch: list[Gen], kind: str) -> None:
    wire = coinbase.WIRE.for_markets(COINBASE_MARKETS)
    events = [e for g in batch for e in wire.parse(coinbase_frame(g, kind).encode())]
    assert events == [TradeEvent(COINBASE_MARKETS[g.market], g.expected()) for g in batch]
    for g, event in zip(batch, events, strict=True):
        assert isinstance(event, TradeEvent)
        assert event.trade.ts // 60_000 == g.us // 60_000_000  # never in the next minute


@given(st.lists(gens, max_size=20))
def test_kraken_frame_of_many_trades_comes_back_in_order(batch: list[Gen]) -> None:
    wire = kraken.WIRE.for_markets(KRAKEN_MARKETS)
    events = wire.parse(kraken_frame(batch))
    assert events == [TradeEvent(KRAKEN_MARKETS[g.market], g.expected()) for g in batch]


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("2026-03-01T12:34:59.999600Z", 1772368499999),
        ("2026-03-01T12:34:59.9996Z", 1772368499999),
        ("2026-03-01T12:34:59.999999Z", 1772368499999),
        ("2026-03-01T12:35:00Z", 1772368500000),
        ("2026-03-01T12:35:00.000999+00:00", 1772368500000),
        ("2026-03-01T12:35:00.1Z", 1772368500100),
    ],
)
def test_coinbase_time_is_floored_to_the_ms_whatever_its_digits(text: str, ms: int) -> None:
    wire = coinbase.WIRE.for_markets(COINBASE_MARKETS)
    frame = {"type": "match", "trade_id": 7, "side": "buy", "size": "1", "price": "2",
             "product_id": "BTC-USD", "time": text}  # fmt: skip
    assert wire.parse(json.dumps(frame)) == [TradeEvent(COINBASE_MARKETS[0], Trade(7, ms, 2.0, 1.0, "sell"))]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
WIRES = [
    binance.WIRE.for_markets(BINANCE_MARKETS),
    coinbase.WIRE.for_markets(COINBASE_MARKETS),
    kraken.WIRE.for_markets(KRAKEN_MARKETS),
]


def only_events(events: list[Event]) -> bool:
    return all(isinstance(e, TradeEvent | Control | Garbage) for e in events)


@given(st.binary(max_size=64) | st.text(max_size=64))
def test_any_bytes_or_text_never_raise(frame: bytes | str) -> None:
    for wire in WIRES:
        events = wire.parse(frame)
        assert events and only_events(events)


@given(json_values)
def test_any_json_never_raises_and_is_garbage_unless_it_means_something(value: Any) -> None:
    for wire in WIRES:
        events = wire.parse(json.dumps(value))
        assert only_events(events)
        assert not any(isinstance(e, TradeEvent) for e in events)  # no random value is a trade


@given(gens, st.sampled_from(["t", "T", "p", "q", "m", "s"]), json_values)
def test_binance_trade_with_a_field_missing_or_replaced_is_garbage_or_right(
    g: Gen, key: str, value: Any
) -> None:
    wire = binance.WIRE.for_markets(BINANCE_MARKETS)
    frame = json.loads(binance_frame(g))
    del frame["data"][key]
    assert [type(e) for e in wire.parse(json.dumps(frame))] == [Garbage]
    frame["data"][key] = value
    (event,) = wire.parse(json.dumps(frame))
    assert isinstance(event, Garbage) or event == TradeEvent(BINANCE_MARKETS[g.market], event.trade)


GARBAGE = [
    (binance, '{"e":"aggTrade","s":"BTCUSDT"}', "unknown event type"),
    (binance, '{"e":"trade","s":"DOGEUSDT","t":1,"p":"1","q":"1","T":1,"m":true}', "unknown symbol"),
    (binance, '{"e":"trade","s":"BTCUSDT","t":true,"p":"1","q":"1","T":1,"m":true}', "bad trade id"),
    (binance, '{"e":"trade","s":"BTCUSDT","t":1,"p":"NaN","q":"1","T":1,"m":true}', "bad price"),
    (binance, '{"e":"trade","s":"BTCUSDT","t":1,"p":"-1","q":"1","T":1,"m":true}', "bad price"),
    (binance, '{"e":"trade","s":"BTCUSDT","t":1,"p":"1","q":"1","T":1,"m":"yes"}', "buyer-is-maker"),
    (binance, '{"error":{"code":2,"msg":"Invalid request"},"id":1}', "binance error"),
    (binance, "[1, 2]", "not a JSON object"),
    (coinbase, '{"type":"match","trade_id":1,"side":"up","size":"1","price":"1",'
     '"product_id":"BTC-USD","time":"2026-01-01T00:00:00Z"}', "bad side"),
    (coinbase, '{"type":"match","trade_id":1,"side":"buy","size":"1","price":"1",'
     '"product_id":"BTC-USD","time":"2026-13-01T00:00:00Z"}', "bad time"),
    (coinbase, '{"type":"match","trade_id":1,"side":"buy","size":"1","price":"1",'
     '"product_id":"BTC-USD","time":"2026-01-01 00:00:00"}', "bad time"),
    (coinbase, '{"type":"match","trade_id":1,"side":"buy","size":"1","price":"1",'
     '"product_id":"BTC-EUR","time":"2026-01-01T00:00:00Z"}', "unknown product"),
    (coinbase, '{"type":"error","message":"Failed to subscribe","reason":"BTC-USDX is not a valid product"}',
     "Failed to subscribe"),
    (coinbase, '{"type":"ticker"}', "unknown message type"),
    (kraken, '{"channel":"book","type":"update","data":[]}', "unknown channel"),
    (kraken, '{"channel":"trade","type":"update","data":{}}', "without a data list"),
    (kraken, '{"method":"subscribe","success":false,"error":"Currency pair not supported BTC/USDX"}',
     "Currency pair not supported"),
    (kraken, '{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD","side":"buy","price":"x",'
     '"qty":1,"trade_id":1,"timestamp":"2026-01-01T00:00:00Z"}]}', "bad price"),
    (kraken, "not json", "not JSON"),
]  # fmt: skip


@pytest.mark.parametrize(("module", "frame", "reason"), GARBAGE)
def test_unreadable_frames_are_garbage_with_a_reason(module: Any, frame: str, reason: str) -> None:
    markets = {binance: BINANCE_MARKETS, coinbase: COINBASE_MARKETS, kraken: KRAKEN_MARKETS}[module]
    (event,) = module.WIRE.for_markets(markets).parse(frame)
    assert isinstance(event, Garbage)
    assert reason in event.reason


def test_kraken_keeps_the_good_trades_of_a_frame_with_a_bad_one() -> None:
    frame = json.loads(kraken_frame([Gen(0, 5, 1_700_000_000_123_456, "10.5", "2", "sell")]))
    frame["data"].append({"symbol": "BTC/USD", "side": "sideways"})
    events = kraken.WIRE.for_markets(KRAKEN_MARKETS).parse(json.dumps(frame))
    assert events[0] == TradeEvent(KRAKEN_MARKETS[0], Trade(5, 1_700_000_000_123, 10.5, 2.0, "sell"))
    assert isinstance(events[1], Garbage)


CONTROLS = [
    (binance, '{"result":null,"id":1}', Control("subscribed", "request 1")),
    (binance, '{"stream":"btcusdt@trade","data":{"e":"serverShutdown","E":1}}',
     Control("shutdown", "serverShutdown")),
    (coinbase, '{"type":"heartbeat","sequence":9,"last_trade_id":0,"product_id":"BTC-USD",'
     '"time":"2026-01-01T00:00:00.000001Z"}', Control("heartbeat", "BTC-USD")),
    (coinbase, '{"type":"subscriptions","channels":[{"name":"matches","product_ids":["BTC-USD"]}]}',
     Control("subscribed", '[{"name":"matches","product_ids":["BTC-USD"]}]')),
    (kraken, '{"channel":"heartbeat"}', Control("heartbeat")),
    (kraken, '{"method":"pong","req_id":2,"time_in":"x","time_out":"y"}', Control("pong")),
    (kraken, '{"method":"subscribe","result":{"channel":"trade","symbol":"BTC/USD","snapshot":false},'
     '"success":true,"req_id":1}', Control("subscribed", "BTC/USD")),
    (kraken, '{"channel":"status","type":"update","data":[{"system":"online"}]}',
     Control("ignored", "status")),
]  # fmt: skip


@pytest.mark.parametrize(("module", "frame", "control"), CONTROLS)
def test_acks_heartbeats_pongs_and_shutdowns_are_controls(module: Any, frame: str, control: Control) -> None:
    assert module.WIRE.parse(frame) == [control]


def test_kraken_snapshot_trades_are_trades_too() -> None:
    frame = kraken_frame([Gen(2, 9, 1_700_000_000_000_000, "0.12", "100", "buy")]).replace(
        "update", "snapshot"
    )
    assert kraken.WIRE.for_markets(KRAKEN_MARKETS).parse(frame) == [
        TradeEvent(KRAKEN_MARKETS[2], Trade(9, 1_700_000_000_000, 0.12, 100.0, "buy"))
    ]


# --- names, URLs, subscribe messages -------------------------------------------------


def test_binance_names_and_combined_stream_url() -> None:
    wire = binance.BinanceWire()
    assert wire.exchange_symbol(BINANCE_MARKETS[0]) == "BTCUSDT"
    url = wire.stream_url("wss://stream.binance.com:9443/", BINANCE_MARKETS[:2])
    assert url == "wss://stream.binance.com:9443/stream?streams=btcusdt@trade/ethusdt@trade"
    assert wire.subscribe(BINANCE_MARKETS[:2]) == []
    assert wire.ping() is None
    assert (wire.default_quote, wire.silence_s > 20, wire.max_connection_s) == ("USDT", True, 23.5 * 3600)
    # stream_url registered the markets: their trades now parse
    (event,) = wire.parse(binance_frame(Gen(1, 3, 1_700_000_000_000_000, "1", "1", "buy")))
    assert event == TradeEvent(BINANCE_MARKETS[1], Trade(3, 1_700_000_000_000, 1.0, 1.0, "buy"))


def test_coinbase_subscribes_to_matches_and_heartbeats() -> None:
    wire = coinbase.CoinbaseWire()
    assert wire.exchange_symbol(COINBASE_MARKETS[0]) == "BTC-USD"
    assert wire.stream_url(wire.default_ws_url, COINBASE_MARKETS[:2]) == "wss://ws-feed.exchange.coinbase.com"
    assert [json.loads(m) for m in wire.subscribe(COINBASE_MARKETS[:2])] == [
        {"type": "subscribe", "product_ids": ["BTC-USD", "ETH-USD"], "channels": ["matches", "heartbeat"]}
    ]
    assert (wire.default_quote, wire.ping(), wire.max_connection_s) == ("USD", None, None)


def test_kraken_subscribe_ping_and_the_xbt_spelling_both_ways() -> None:
    wire = kraken.KrakenWire()
    assert wire.exchange_symbol(KRAKEN_MARKETS[0]) == "BTC/USD"
    assert kraken.rest_pair(KRAKEN_MARKETS[0]) == "XBTUSD"
    assert kraken.rest_pair(KRAKEN_MARKETS[2]) == "XDGUSD"
    assert (kraken.our_asset("XBT"), kraken.our_asset("XDG"), kraken.our_asset("ETH")) == (
        "BTC",
        "DOGE",
        "ETH",
    )
    assert [json.loads(m) for m in wire.subscribe(KRAKEN_MARKETS[:1])] == [
        {"method": "subscribe", "params": {"channel": "trade", "symbol": ["BTC/USD"], "snapshot": False},
         "req_id": 1}
    ]  # fmt: skip
    assert json.loads(wire.ping() or "") == {"method": "ping"}
    frame = kraken_frame([Gen(0, 1, 1_700_000_000_000_000, "5", "1", "sell")]).replace("BTC/USD", "XBT/USD")
    assert wire.parse(frame) == [TradeEvent(KRAKEN_MARKETS[0], Trade(1, 1_700_000_000_000, 5.0, 1.0, "sell"))]


def test_an_unbound_wire_knows_no_market() -> None:
    (event,) = binance.BinanceWire().parse(binance_frame(Gen(0, 1, 1_700_000_000_000_000, "1", "1", "buy")))
    assert isinstance(event, Garbage) and "unknown symbol 'BTCUSDT'" in event.reason
