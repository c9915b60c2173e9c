"""The fake exchanges answer in the documented formats (../shared/EXCHANGES.md), over
loopback, with real httpx and websockets clients; their faults do what they say."""

from __future__ import annotations

import contextlib
import itertools
import json
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, ConnectionClosedError
from websockets.sync.client import ClientConnection, connect

from cryptoctl.exchanges.trade import Market, Trade
from tests.fakes import (
    MINUTE_MS,
    FakeExchange,
    assign_micros,
    fake_exchange,
    generate_trades,
    reference_candles,
)

BINANCE = Market("binance", "BTC", "USDT")
COINBASE = Market("coinbase", "BTC", "USD")
KRAKEN = Market("kraken", "BTC", "USD")
TRADES = generate_trades(7, 2500)


def ws(url: str) -> ClientConnection:
    return connect(url, proxy=None, open_timeout=5, close_timeout=1)


def recv_json(conn: ClientConnection, timeout: float = 3.0) -> Any:
    return json.loads(conn.recv(timeout=timeout))


def frames(conn: ClientConnection, n: int, timeout: float = 3.0) -> list[Any]:
    return [recv_json(conn, timeout) for _ in range(n)]


def micros_time(text: str) -> int:
    """``2026-…T…:05.123456Z`` -> epoch microseconds, exactly (no float)."""
    stamp, frac = text.rstrip("Z").split(".")
    seconds = int(datetime.fromisoformat(stamp + "+00:00").timestamp())
    return seconds * 1_000_000 + int(frac.ljust(6, "0"))


@pytest.fixture
def binance() -> Iterator[FakeExchange]:
    with fake_exchange("binance", {BINANCE: TRADES}, live=0) as fx:
        yield fx


@pytest.fixture
def http(binance: FakeExchange) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=binance.rest_url, timeout=5) as client:
        yield client


# -- trade sets and the reference --


def test_generated_trades_are_seeded_consecutive_and_decimal() -> None:
    again = generate_trades(7, 2500)
    assert again == TRADES
    assert [t.trade_id for t in TRADES] == list(range(1, 2501))
    assert all(a.ts <= b.ts for a, b in itertools.pairwise(TRADES))
    assert all(float(f"{t.price:.2f}") == t.price and float(f"{t.qty:.8f}") == t.qty for t in TRADES)
    shared = sum(a.ts == b.ts for a, b in itertools.pairwise(TRADES))
    assert shared > 300  # several trades per millisecond are the norm
    candles = reference_candles(TRADES, fill_empty=True)
    assert any(c.trades == 0 for c in candles)  # quiet minutes exist
    last_ms = [t for t in TRADES if t.ts % MINUTE_MS == MINUTE_MS - 1]
    micros = assign_micros(TRADES)
    assert last_ms and micros[max(t.trade_id for t in last_ms if t.ts == last_ms[0].ts)] == 999
    assert all(
        micros[a.trade_id] <= micros[b.trade_id] for a, b in itertools.pairwise(TRADES) if a.ts == b.ts
    )


def test_reference_candles_by_hand() -> None:
    trades = [
        Trade(11, 60_000, 10.0, 1.0, "buy"),
        Trade(10, 60_000, 9.0, 1.0, "sell"),  # same ms, lower id: the open
        Trade(12, 119_999, 12.0, 2.0, "buy"),  # the minute's last ms: the close
        Trade(13, 240_000, 11.0, 1.0, "sell"),
    ]
    sparse = reference_candles(trades)
    assert [(c.start_ms, c.open, c.high, c.low, c.close, c.trades) for c in sparse] == [
        (60_000, 9.0, 12.0, 9.0, 12.0, 3),
        (240_000, 11.0, 11.0, 11.0, 11.0, 1),
    ]
    assert sparse[0].volume == 4.0 and sparse[0].vwap == pytest.approx((9 + 10 + 24) / 4)
    assert sparse[0].buy_volume == 3.0
    filled = reference_candles(trades, fill_empty=True)
    assert [(c.start_ms, c.open, c.close, c.volume) for c in filled[1:3]] == [
        (120_000, 12.0, 12.0, 0.0),
        (180_000, 12.0, 12.0, 0.0),
    ]


# -- Binance REST --


def test_binance_historical_trades_page_the_set_exactly_once(
    binance: FakeExchange, http: httpx.Client
) -> None:
    seen: list[int] = []
    from_id = 1
    while True:
        reply = http.get(
            "/api/v3/historicalTrades", params={"symbol": "BTCUSDT", "fromId": from_id, "limit": 1000}
        )
        assert reply.status_code == 200 and int(reply.headers["X-MBX-USED-WEIGHT-1M"]) > 0
        rows = reply.json()
        if not rows:
            break
        assert set(rows[0]) == {"id", "price", "qty", "quoteQty", "time", "isBuyerMaker", "isBestMatch"}
        assert rows[0]["id"] == from_id  # fromId is inclusive
        seen.extend(r["id"] for r in rows)
        from_id = rows[-1]["id"] + 1
    assert seen == [t.trade_id for t in TRADES]
    assert binance.requests["/api/v3/historicalTrades"] == 4
    row = http.get("/api/v3/historicalTrades", params={"symbol": "BTCUSDT", "fromId": 5, "limit": 1}).json()[
        0
    ]
    t = TRADES[4]
    assert (float(row["price"]), float(row["qty"]), row["time"]) == (t.price, t.qty, t.ts)
    assert row["isBuyerMaker"] is (t.side == "sell") and isinstance(row["price"], str)


def test_binance_errors_carry_the_weight_header(http: httpx.Client) -> None:
    unknown = http.get("/api/v3/historicalTrades", params={"symbol": "NOPEUSDT"})
    assert unknown.status_code == 400 and unknown.json() == {"code": -1121, "msg": "Invalid symbol."}
    assert "X-MBX-USED-WEIGHT-1M" in unknown.headers
    too_many = http.get("/api/v3/historicalTrades", params={"symbol": "BTCUSDT", "limit": 1001})
    assert too_many.status_code == 400 and too_many.json()["code"] == -1130
    recent = http.get("/api/v3/trades", params={"symbol": "BTCUSDT", "limit": 3}).json()
    assert [r["id"] for r in recent] == [2498, 2499, 2500]


def test_binance_agg_trades_find_the_first_trade_at_a_time(http: httpx.Client) -> None:
    at = TRADES[1234].ts
    rows = http.get(
        "/api/v3/aggTrades", params={"symbol": "BTCUSDT", "startTime": at, "endTime": at + 60_000}
    ).json()
    first = next(t for t in TRADES if t.ts >= at)
    assert rows[0]["f"] == first.trade_id and rows[0]["T"] >= at
    assert all(r["a"] != r["f"] and r["f"] <= r["l"] for r in rows)  # agg ids are not trade ids
    by_agg = http.get(
        "/api/v3/aggTrades", params={"symbol": "BTCUSDT", "fromId": rows[1]["a"], "limit": 1}
    ).json()
    assert by_agg == rows[1:2]
    wide = http.get("/api/v3/aggTrades", params={"symbol": "BTCUSDT", "startTime": 0, "endTime": 7_200_000})
    assert wide.status_code == 400 and wide.json()["code"] == -1127


def test_binance_klines_match_the_reference(binance: FakeExchange, http: httpx.Client) -> None:
    reference = reference_candles(TRADES, fill_empty=True)
    rows: list[list[Any]] = []
    start = 0
    while True:
        page = http.get(
            "/api/v3/klines",
            params={"symbol": "BTCUSDT", "interval": "1m", "startTime": start, "limit": 1000},
        ).json()
        rows.extend(page)
        if len(page) < 1000:
            break
        start = page[-1][0] + MINUTE_MS
    assert len(rows) == len(reference)
    for row, ref in zip(rows, reference, strict=True):
        assert row[0] == ref.start_ms and row[6] == ref.start_ms + MINUTE_MS - 1
        assert [float(x) for x in row[1:5]] == [ref.open, ref.high, ref.low, ref.close]
        assert float(row[5]) == pytest.approx(ref.volume, rel=1e-9, abs=1e-12)
        assert row[8] == ref.trades and row[11] == "0"
        assert float(row[9]) == pytest.approx(ref.buy_volume, rel=1e-9, abs=1e-12)
        assert all(isinstance(x, str) for x in row[1:6]) and isinstance(row[8], int)
    empty = next(r for r in rows if r[8] == 0)
    previous = rows[rows.index(empty) - 1]
    assert empty[1] == empty[2] == empty[3] == empty[4] == previous[4] and float(empty[5]) == 0
    # the last minute is the one still forming: its start is the exchange's clock's minute
    assert rows[-1][0] == binance.now_ms // MINUTE_MS * MINUTE_MS
    latest = http.get("/api/v3/klines", params={"symbol": "BTCUSDT", "interval": "1m", "limit": 2}).json()
    assert latest == rows[-2:]


def test_binance_exchange_info(http: httpx.Client) -> None:
    info = http.get("/api/v3/exchangeInfo", params={"symbol": "BTCUSDT"}).json()
    (symbol,) = info["symbols"]
    assert (symbol["symbol"], symbol["baseAsset"], symbol["quoteAsset"], symbol["status"]) == (
        "BTCUSDT",
        "BTC",
        "USDT",
        "TRADING",
    )


def test_binance_ping_answers_an_empty_object_with_its_weight(http: httpx.Client) -> None:
    reply = http.get("/api/v3/ping")
    assert reply.status_code == 200 and reply.json() == {}
    assert int(reply.headers["X-MBX-USED-WEIGHT-1M"]) >= 1


# -- Coinbase REST --


def test_coinbase_trades_page_newest_first_with_cursors() -> None:
    with (
        fake_exchange("coinbase", {COINBASE: TRADES}, live=0) as fx,
        httpx.Client(base_url=fx.rest_url) as http,
    ):
        seen: list[int] = []
        params: dict[str, Any] = {"limit": 1000}
        while True:
            reply = http.get("/products/BTC-USD/trades", params=params)
            rows = reply.json()
            if not rows:
                break
            ids = [r["trade_id"] for r in rows]
            assert ids == sorted(ids, reverse=True)
            assert (reply.headers["CB-BEFORE"], reply.headers["CB-AFTER"]) == (str(ids[0]), str(ids[-1]))
            seen.extend(ids)
            params = {"limit": 1000, "after": reply.headers["CB-AFTER"]}
        assert sorted(seen) == [t.trade_id for t in TRADES] and len(seen) == len(set(seen))
        newer = http.get("/products/BTC-USD/trades", params={"before": 100, "limit": 5}).json()
        assert [r["trade_id"] for r in newer] == [105, 104, 103, 102, 101]
        row = http.get("/products/BTC-USD/trades", params={"after": 2, "limit": 1}).json()[0]
        t = TRADES[0]
        assert micros_time(row["time"]) // 1000 == t.ts  # floored to the trade's ms
        assert row["side"] == ("sell" if t.side == "buy" else "buy")  # the maker's side
        assert (float(row["price"]), float(row["size"])) == (t.price, t.qty)
        assert http.get("/products/BTC-USD/trades", params={"limit": 1001}).status_code == 400
        missing = http.get("/products/DOGE-EUR/trades")
        assert missing.status_code == 404 and missing.json() == {"message": "NotFound"}
        assert fx.requests["/products/{id}/trades"] >= 4


def test_coinbase_candles_skip_empty_minutes_newest_first() -> None:
    reference = {c.start_ms // 1000: c for c in reference_candles(TRADES)}
    with (
        fake_exchange("coinbase", {COINBASE: TRADES}, live=0) as fx,
        httpx.Client(base_url=fx.rest_url) as http,
    ):
        start = TRADES[0].ts // 1000
        rows = http.get(
            "/products/BTC-USD/candles", params={"granularity": 60, "start": start, "end": start + 299 * 60}
        ).json()
        times = [r[0] for r in rows]
        assert times == sorted(times, reverse=True) and len(rows) <= 300
        assert set(times) == {s for s in reference if start <= s <= start + 299 * 60}  # no empty rows
        for time_s, low, high, open_, close, volume in rows:
            ref = reference[time_s]
            assert (low, high, open_, close) == (ref.low, ref.high, ref.open, ref.close)
            assert volume == pytest.approx(ref.volume, rel=1e-9)
        too_wide = http.get(
            "/products/BTC-USD/candles", params={"granularity": 60, "start": start, "end": start + 400 * 60}
        )
        assert too_wide.status_code == 400
        iso = http.get(
            "/products/BTC-USD/candles",
            params={"granularity": 60, "start": "2026-01-01T00:00:00Z", "end": "2026-01-01T00:10:00Z"},
        ).json()
        assert iso and all(start <= r[0] <= start + 600 for r in iso)
        product = http.get("/products/BTC-USD").json()
        assert (product["base_currency"], product["quote_currency"]) == ("BTC", "USD")


# -- Kraken REST --


def test_kraken_trades_page_by_since_exactly_once_even_inside_a_microsecond() -> None:
    # bursts: many trades share one microsecond, and pages of 7 end inside them
    same_us = [Trade(100 + i, 1_767_225_600_000 + i // 5, 50.0, 0.5, "buy") for i in range(60)]
    micros = {KRAKEN: {t.trade_id: 0 for t in same_us}}
    with (
        fake_exchange("kraken", {KRAKEN: same_us}, live=0, micros=micros) as fx,
        httpx.Client(base_url=fx.rest_url) as http,
    ):
        seen: list[int] = []
        since = 0
        for _ in range(20):
            body = http.get("/0/public/Trades", params={"pair": "XBTUSD", "since": since, "count": 7}).json()
            assert body["error"] == []
            rows = body["result"]["XXBTZUSD"]
            if not rows:
                break
            seen.extend(r[6] for r in rows)
            since = int(body["result"]["last"])
        assert seen == [t.trade_id for t in same_us]


def test_kraken_trade_rows_and_ohlc() -> None:
    with fake_exchange("kraken", {KRAKEN: TRADES}, live=0) as fx, httpx.Client(base_url=fx.rest_url) as http:
        reply = http.get("/0/public/Trades", params={"pair": "XXBTZUSD", "since": 0, "count": 3})
        price, volume, when, side, kind, misc, trade_id = reply.json()["result"]["XXBTZUSD"][0]
        t = TRADES[0]
        assert (float(price), float(volume), side, misc, trade_id) == (t.price, t.qty, "b", "", t.trade_id)
        assert isinstance(when, float) and kind in ("l", "m")
        raw = reply.text.split(",")[3]  # the time is written with its microseconds, exactly
        assert raw == f"{t.ts // 1000}.{t.ts % 1000:03d}{fx.micros[KRAKEN][t.trade_id]:03d}"
        unknown = http.get("/0/public/Trades", params={"pair": "FOOBAR"})
        assert unknown.status_code == 200 and unknown.json() == {"error": ["EQuery:Unknown asset pair"]}

        body = http.get("/0/public/OHLC", params={"pair": "XBTUSD", "interval": 1}).json()["result"]
        rows = body["XXBTZUSD"]
        reference = {c.start_ms // 1000: c for c in reference_candles(TRADES, fill_empty=True)}
        assert len(rows) == min(720, len(reference))
        assert rows[-1][0] == fx.now_ms // MINUTE_MS * 60  # the uncommitted one
        assert body["last"] == rows[-2][0]
        for time_s, o, h, lo, c, vwap, vol, count in rows:
            ref = reference[time_s]
            assert [float(x) for x in (o, h, lo, c)] == [ref.open, ref.high, ref.low, ref.close]
            assert (count, float(vol)) == (ref.trades, pytest.approx(ref.volume, rel=1e-9, abs=1e-12))
            assert float(vwap) == pytest.approx(ref.vwap, abs=1e-5)
        assert any(r[7] == 0 for r in rows)
        later = http.get("/0/public/OHLC", params={"pair": "XBTUSD", "since": rows[-3][0]}).json()["result"]
        assert [r[0] for r in later["XXBTZUSD"]] == [rows[-2][0], rows[-1][0]]

        pairs = http.get("/0/public/AssetPairs", params={"pair": "XBTUSD"}).json()["result"]
        assert pairs["XXBTZUSD"]["altname"] == "XBTUSD"


# -- WebSocket streams --


def test_binance_raw_combined_and_subscribe() -> None:
    eth = Market("binance", "ETH", "USDT")
    sets = {BINANCE: generate_trades(1, 30), eth: generate_trades(2, 30, first_id=900, price=3000.0)}
    with (
        fake_exchange("binance", sets, live=10, pace_s=None) as fx,
        ws(fx.ws_url + "/stream?streams=btcusdt@trade/ethusdt@trade") as combined,
        ws(fx.ws_url + "/ws") as raw,
    ):
        raw.send(json.dumps({"method": "SUBSCRIBE", "params": ["ethusdt@trade"], "id": 7}))
        assert recv_json(raw) == {"result": None, "id": 7}
        fx.wait_sessions(2)
        fx.publish()
        got = frames(combined, 20)
        assert {f["stream"] for f in got} == {"btcusdt@trade", "ethusdt@trade"}
        btc = [f["data"] for f in got if f["stream"] == "btcusdt@trade"]
        assert [e["t"] for e in btc] == list(range(21, 31))
        event = btc[0]
        assert set(event) == {"e", "E", "s", "t", "p", "q", "T", "m", "M"} and event["s"] == "BTCUSDT"
        assert event["m"] is (sets[BINANCE][20].side == "sell") and event["E"] >= event["T"]
        eth_raw = frames(raw, 10)
        assert [e["t"] for e in eth_raw] == list(range(920, 930)) and eth_raw[0]["e"] == "trade"


def test_binance_server_pings_and_shutdown() -> None:
    with (
        fake_exchange("binance", {BINANCE: TRADES[:10]}, live=5, pace_s=None, ping_interval_s=0.1) as fx,
        ws(fx.ws_url + "/ws/btcusdt@trade") as conn,
    ):
        session = fx.wait_sessions(1)[0]
        time.sleep(0.5)
        assert session.conn.latency > 0  # the client library answered the server's pings
        fx.server_shutdown()
        assert recv_json(conn)["e"] == "serverShutdown"
        with pytest.raises(ConnectionClosed):
            conn.recv(timeout=3)
        assert conn.close_code == 1001


def test_coinbase_subscribe_matches_and_heartbeats() -> None:
    with (
        fake_exchange("coinbase", {COINBASE: TRADES[:40]}, live=10, pace_s=None, heartbeat_s=0.2) as fx,
        ws(fx.ws_url) as conn,
    ):
        conn.send(
            json.dumps(
                {"type": "subscribe", "product_ids": ["BTC-USD"], "channels": ["matches", "heartbeat"]}
            )
        )
        subs = recv_json(conn)
        assert subs["type"] == "subscriptions"
        assert {c["name"] for c in subs["channels"]} == {"matches", "heartbeat"}
        last = recv_json(conn)
        assert (last["type"], last["trade_id"]) == ("last_match", 30)
        fx.publish()
        got = [f for f in frames(conn, 14) if f["type"] == "match"]
        assert [m["trade_id"] for m in got] == list(range(31, 41))
        seqs = [m["sequence"] for m in got]
        assert all(b - a > 1 for a, b in itertools.pairwise(seqs))  # shared with other order events
        for m, t in zip(got, TRADES[30:40], strict=True):
            assert m["side"] == ("sell" if t.side == "buy" else "buy")
            assert micros_time(m["time"]) // 1000 == t.ts and isinstance(m["price"], str)
        beats = [recv_json(conn) for _ in range(3)]
        assert all(b["type"] == "heartbeat" and b["product_id"] == "BTC-USD" for b in beats)


def test_coinbase_closes_without_a_subscribe_in_time() -> None:
    with (
        fake_exchange("coinbase", {COINBASE: TRADES[:5]}, subscribe_timeout_s=0.3) as fx,
        ws(fx.ws_url) as conn,
    ):
        started = time.monotonic()
        assert recv_json(conn)["type"] == "error"
        with pytest.raises(ConnectionClosed):
            conn.recv(timeout=3)
        assert time.monotonic() - started < 2


def test_kraken_subscribe_trades_heartbeat_ping() -> None:
    with (
        fake_exchange("kraken", {KRAKEN: TRADES[:20]}, live=5, pace_s=None, heartbeat_s=0.2) as fx,
        ws(fx.ws_url) as conn,
    ):
        assert recv_json(conn)["channel"] == "status"
        conn.send(
            json.dumps(
                {
                    "method": "subscribe",
                    "params": {"channel": "trade", "symbol": ["BTC/USD", "NOPE/USD"], "snapshot": False},
                    "req_id": 3,
                }
            )
        )
        ack, nack = frames(conn, 2)
        assert ack["success"] is True and ack["method"] == "subscribe" and ack["req_id"] == 3
        assert ack["result"]["symbol"] == "BTC/USD"
        assert nack["success"] is False
        fx.publish()
        updates = frames(conn, 5)
        items = [u["data"][0] for u in updates]
        assert all(u["channel"] == "trade" and u["type"] == "update" for u in updates)
        assert [i["trade_id"] for i in items] == list(range(16, 21))
        assert all(isinstance(i["price"], float) and isinstance(i["qty"], float) for i in items)
        assert [(i["price"], i["qty"], i["side"]) for i in items] == [
            (t.price, t.qty, t.side) for t in TRADES[15:20]
        ]
        assert micros_time(items[0]["timestamp"]) // 1000 == TRADES[15].ts
        assert recv_json(conn) == {"channel": "heartbeat"}
        conn.send(json.dumps({"method": "ping", "req_id": 9}))
        pong = next(f for f in frames(conn, 3) if f.get("method") == "pong")
        assert pong["req_id"] == 9


# -- faults --


def test_dropped_trades_miss_the_stream_but_not_rest() -> None:
    with (
        fake_exchange("binance", {BINANCE: TRADES[:50]}, live=20, pace_s=None) as fx,
        ws(fx.ws_url + "/ws/btcusdt@trade") as conn,
        httpx.Client(base_url=fx.rest_url) as http,
    ):
        fx.wait_sessions(1)
        fx.publish(5)
        fx.faults.drop_next = 4
        fx.publish()
        ids = [e["t"] for e in frames(conn, 16)]
        assert ids == list(range(31, 36)) + list(range(40, 51))
        assert [t.trade_id for _, t in fx.faults.dropped] == [36, 37, 38, 39]
        rest = http.get(
            "/api/v3/historicalTrades", params={"symbol": "BTCUSDT", "fromId": 36, "limit": 4}
        ).json()
        assert [r["id"] for r in rest] == [36, 37, 38, 39]


def test_cut_leaves_no_close_frame_and_replay_resends_on_reconnect() -> None:
    with fake_exchange("binance", {BINANCE: TRADES[:50]}, live=20, pace_s=None) as fx:
        with ws(fx.ws_url + "/ws/btcusdt@trade") as conn:
            fx.wait_sessions(1)
            fx.publish(3)
            assert [e["t"] for e in frames(conn, 3)] == [31, 32, 33]
            fx.cut()
            with pytest.raises(ConnectionClosedError):
                conn.recv(timeout=3)
            assert conn.protocol.close_rcvd is None  # no close frame came
        fx.faults.replay_on_connect = 2
        fx.publish(2)  # nobody connected: missed by the stream
        with ws(fx.ws_url + "/ws/btcusdt@trade") as again:
            fx.wait_sessions(1)
            fx.publish(1)
            assert [e["t"] for e in frames(again, 3)] == [34, 35, 36]  # the last 2 again, then live
        assert fx.connections == 2


def test_cut_after_n_trades() -> None:
    with (
        fake_exchange("binance", {BINANCE: TRADES[:50]}, live=20, pace_s=None) as fx,
        ws(fx.ws_url + "/ws/btcusdt@trade") as conn,
    ):
        fx.wait_sessions(1)
        fx.faults.cut_after = 4
        fx.publish(10)
        assert [e["t"] for e in frames(conn, 4)] == [31, 32, 33, 34]
        with pytest.raises(ConnectionClosedError):
            conn.recv(timeout=3)


def test_garbage_and_silence() -> None:
    with (
        fake_exchange("kraken", {KRAKEN: TRADES[:20]}, live=10, pace_s=None, heartbeat_s=0.1) as fx,
        ws(fx.ws_url) as conn,
    ):
        conn.send(json.dumps({"method": "subscribe", "params": {"channel": "trade", "symbol": ["BTC/USD"]}}))
        frames(conn, 2)  # status, ack
        fx.wait_sessions(1)
        fx.send_garbage()
        texts = [conn.recv(timeout=3) for _ in range(2)]
        with pytest.raises(ValueError):
            json.loads(texts[0])
        assert json.loads(texts[1])["channel"] == "mystery"
        fx.silence()
        time.sleep(0.05)
        fx.publish()
        conn.send(json.dumps({"method": "ping"}))
        deadline = time.monotonic() + 0.6
        late: list[str] = []
        while time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                late.append(str(conn.recv(timeout=0.1)))
        assert all("heartbeat" in f for f in late[:2]) and not any(
            "trade_id" in f or "pong" in f for f in late
        )
        assert len(late) <= 2  # at most what was already on its way
        conn.ping().wait(2)  # the socket itself is still open


def test_rest_429_then_418_then_hole_and_counts(binance: FakeExchange, http: httpx.Client) -> None:
    params = {"symbol": "BTCUSDT", "fromId": 1, "limit": 10}
    binance.faults.rest_429 = 2
    binance.faults.retry_after_s = 3
    limited = [http.get("/api/v3/historicalTrades", params=params) for _ in range(3)]
    assert [r.status_code for r in limited] == [429, 429, 200]
    assert limited[0].headers["Retry-After"] == "3" and limited[0].json()["code"] == -1003
    binance.faults.rest_ban = -1
    banned = [http.get("/api/v3/klines", params={"symbol": "BTCUSDT", "interval": "1m"}) for _ in range(2)]
    assert [r.status_code for r in banned] == [418, 418]
    binance.faults.rest_ban = 0
    binance.faults.forget(BINANCE, 100, 199)
    rows = http.get(
        "/api/v3/historicalTrades", params={"symbol": "BTCUSDT", "fromId": 95, "limit": 10}
    ).json()
    assert [r["id"] for r in rows] == [95, 96, 97, 98, 99, 200, 201, 202, 203, 204]
    assert binance.requests == {"/api/v3/historicalTrades": 4, "/api/v3/klines": 2}


def test_binance_weight_limit_answers_429() -> None:
    with (
        fake_exchange("binance", {BINANCE: TRADES[:5]}, weight_limit=50) as fx,
        httpx.Client(base_url=fx.rest_url) as http,
    ):
        codes = [http.get("/api/v3/trades", params={"symbol": "BTCUSDT"}).status_code for _ in range(3)]
        assert codes == [200, 200, 429]


def test_live_tail_is_paced_and_rest_has_only_what_happened() -> None:
    with (
        fake_exchange("coinbase", {COINBASE: TRADES[:100]}, live=50, pace_s=0.01) as fx,
        httpx.Client(base_url=fx.rest_url) as http,
    ):
        newest = http.get("/products/BTC-USD/trades", params={"limit": 1}).json()[0]["trade_id"]
        assert newest == 50  # the live tail waits for a subscriber
        with ws(fx.ws_url) as conn:
            conn.send(json.dumps({"type": "subscribe", "product_ids": ["BTC-USD"], "channels": ["matches"]}))
            started = time.monotonic()
            got = [f for f in frames(conn, 52) if f["type"] == "match"]
            assert [m["trade_id"] for m in got] == list(range(51, 101))
            assert time.monotonic() - started >= 0.4
        assert http.get("/products/BTC-USD/trades", params={"limit": 1}).json()[0]["trade_id"] == 100
