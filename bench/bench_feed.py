"""Exchange feed throughput: Binance ``@trade`` frames -> parse -> continuity -> validate ->
produce, in one process, from a minimal local server streaming as fast as it can.

    .venv/bin/python bench/bench_feed.py [--trades 300000] [--repeat 3] [--bootstrap HOST:PORT]
    .venv/bin/python bench/bench_feed.py --history [--trades 300000] ...

The server runs in a child process (so it does not share the GIL with the feed) and
sends pre-encoded combined-stream frames (``{"stream":"btcusdt@trade","data":{...}}``)
for two markets, ids consecutive, then stays connected. The feed is the real
ExchangeSource (reader thread, WireConnection, BinanceWire.parse, MarketContinuity, the
Kafka sender with acks=all, idempotence, lz4); the figure runs from the first frame to
the last delivery report, flush included. No REST is needed: the ids never jump.
Without --bootstrap it starts its own local broker, as bench_produce.py does.

``--history``: ``produce --since`` instead. A plain HTTP server in a child process
serves Binance's REST history as the exchange does (``aggTrades`` for the first id at the
since time, then ``historicalTrades`` pages of 1000, pre-encoded, keep-alive, no delay
beyond loopback) for the same two markets, half the trades each; the figure runs from the
first request to the last delivery report. The client's weight budget is lifted: on the
real exchange, 6000 weight a minute at 25 a page allows 4,000 trades/s per IP.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_produce import fresh_topic, start_broker

from cryptoctl.exchanges.binance import WIRE, BinanceHistory, exchange_symbol
from cryptoctl.exchanges.rest import ExchangeBudget, RateLimit
from cryptoctl.exchanges.trade import Market
from cryptoctl.producer import ProducerOptions, ProducerRun
from cryptoctl.settings import Settings, load_settings
from cryptoctl.sources.exchange import ExchangeConfig, ExchangeSource

MARKETS = [Market("binance", "BTC", "USDT"), Market("binance", "ETH", "USDT")]
START_MS = 1_767_225_600_000


def frames(n: int) -> list[str]:
    out = []
    ids = {m: 1_000_000 for m in MARKETS}
    for i in range(n):
        market = MARKETS[i % len(MARKETS)]
        ids[market] += 1
        symbol = f"{market.symbol}{market.quote}"
        price = f"{90_000 + (i % 500) * 0.01:.2f}"
        out.append(
            f'{{"stream":"{symbol.lower()}@trade","data":{{"e":"trade","E":{START_MS + i // 20},'
            f'"s":"{symbol}","t":{ids[market]},"p":"{price}","q":"0.00150000",'
            f'"T":{START_MS + i // 20},"m":{"true" if i % 3 else "false"},"M":true}}}}'
        )
    return out


def serve(n: int, ports: Any) -> None:
    """The child process: one connection gets every frame, as fast as the socket takes them.

    The frames are serialized once, up front, by websockets itself and written in chunks
    of 256 frames: sending them one by one costs the server ~8 us a frame, CPU the feed
    would be short of on a 2-core machine."""
    from websockets.frames import Frame, Opcode
    from websockets.sync.server import serve as ws_serve

    encoded = [Frame(Opcode.TEXT, f.encode()).serialize(mask=False) for f in frames(n)]
    chunks = [b"".join(encoded[i : i + 256]) for i in range(0, len(encoded), 256)]

    def handler(conn: Any) -> None:
        with conn.protocol_mutex:  # no keepalive: nothing else writes meanwhile
            for chunk in chunks:
                conn.socket.sendall(chunk)
        conn.recv()  # then idle until the client goes

    with ws_serve(handler, "127.0.0.1", 0, compression=None, ping_interval=None) as server:
        ports.put(server.socket.getsockname()[1])
        server.serve_forever()


class NoHistory:
    """The ids never jump, so the continuity never asks."""

    def trades_after(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("no fill expected")

    trades_since = trades_after

    def close(self) -> None:
        pass


def one_run(settings: Settings, n: int) -> float:
    ctx = mp.get_context("spawn")
    ports = ctx.Queue()
    server = ctx.Process(target=serve, args=(n, ports), daemon=True)
    server.start()
    try:
        port = ports.get(timeout=60)
        config = ExchangeConfig("binance", ("BTC", "ETH"), ws_url=f"ws://127.0.0.1:{port}")
        source = ExchangeSource(config, WIRE.for_markets(MARKETS), NoHistory(), MARKETS)
        run = ProducerRun(settings, source, ProducerOptions(count=n))
        stop = threading.Event()
        started = time.perf_counter()
        summary = run.run(stop)
        elapsed = time.perf_counter() - started
        assert summary.delivered == n, summary
        return n / elapsed
    finally:
        server.terminate()
        server.join()


PAGE = 1000


def history_rows(n: int) -> dict[str, list[dict[str, Any]]]:
    """Each market's REST trades, as historicalTrades spells them, ids from 1."""
    rows: dict[str, list[dict[str, Any]]] = {}
    for k, market in enumerate(MARKETS):
        symbol = exchange_symbol(market)
        rows[symbol] = [
            {
                "id": i + 1,
                "price": f"{90_000 + (i % 500) * 0.01 + k:.8f}",
                "qty": "0.00150000",
                "quoteQty": f"{(90_000 + (i % 500) * 0.01 + k) * 0.0015:.8f}",
                "time": START_MS + i // 20,
                "isBuyerMaker": bool(i % 3),
                "isBestMatch": True,
            }
            for i in range(n // len(MARKETS))
        ]
    return rows


def serve_history(n: int, ports: Any) -> None:
    """The child process: aggTrades (the first id at a time) and historicalTrades pages."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import parse_qsl, urlsplit

    rows = history_rows(n)
    pages = {  # (symbol, fromId) -> body, for the pages a client walking by 1000 asks
        (symbol, i + 1): json.dumps(trades[i : i + PAGE], separators=(",", ":")).encode()
        for symbol, trades in rows.items()
        for i in range(0, len(trades) + 1, PAGE)
    }

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            split = urlsplit(self.path)
            q = dict(parse_qsl(split.query))
            trades = rows[q["symbol"]]
            if split.path == "/api/v3/aggTrades":
                first = next(t for t in trades if t["time"] >= int(q["startTime"]))
                body = json.dumps([{"a": first["id"], "f": first["id"], "l": first["id"],
                                    "T": first["time"], "p": first["price"], "q": first["qty"],
                                    "m": first["isBuyerMaker"], "M": True}]).encode()  # fmt: skip
            else:
                start, limit = int(q["fromId"]), int(q["limit"])
                body = pages.get((q["symbol"], start)) or json.dumps(
                    trades[start - 1 : start - 1 + limit], separators=(",", ":")
                ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-MBX-USED-WEIGHT-1M", "25")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with ThreadingHTTPServer(("127.0.0.1", 0), Handler) as server:
        ports.put(server.server_address[1])
        server.serve_forever()


def history_run(settings: Settings, n: int) -> float:
    ctx = mp.get_context("spawn")
    ports = ctx.Queue()
    server = ctx.Process(target=serve_history, args=(n, ports), daemon=True)
    server.start()
    try:
        rest_url = f"http://127.0.0.1:{ports.get(timeout=60)}"
        config = ExchangeConfig("binance", ("BTC", "ETH"), since_ms=START_MS, ws_url="ws://127.0.0.1:9",
                                rest_url=rest_url)  # fmt: skip
        history = BinanceHistory(rest_url, budget=ExchangeBudget(RateLimit()))
        source = ExchangeSource(config, WIRE.for_markets(MARKETS), history, MARKETS)
        run = ProducerRun(settings, source, ProducerOptions(count=n))
        started = time.perf_counter()
        summary = run.run(threading.Event())
        elapsed = time.perf_counter() - started
        assert summary.delivered == n, summary
        return n / elapsed
    finally:
        server.terminate()
        server.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trades", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    parser.add_argument("--bootstrap", help="an existing broker instead of a fresh local one")
    parser.add_argument("--history", action="store_true", help="--since over REST instead of the stream")
    args = parser.parse_args()
    run = history_run if args.history else one_run
    with tempfile.TemporaryDirectory(prefix="bench-feed-") as tmp:
        if args.bootstrap:
            settings = load_settings({"kafka_bootstrap": args.bootstrap}, environ={})
        else:
            settings = start_broker(Path(tmp))
        try:
            best = max(run(fresh_topic(settings), args.trades) for _ in range(args.repeat))
        finally:
            if not args.bootstrap:
                from cryptoctl.stack.local import stop_service

                stop_service(settings, "kafka")
    import confluent_kafka
    import websockets

    print(f"machine: {platform.machine()} {os.cpu_count()} cores, python {platform.python_version()}, "
          f"websockets {websockets.__version__}, confluent-kafka {confluent_kafka.__version__} "
          f"(librdkafka {confluent_kafka.libversion()[0]}); "
          f"{args.trades:,} trades, best of {args.repeat}")  # fmt: skip
    if args.history:
        print(f"produce --source binance --since (REST pages of {PAGE} -> topic): {best:,.0f} trades/s "
              "(no weight budget)")  # fmt: skip
    else:
        print(f"produce --source binance (@trade frames -> topic): {best:,.0f} trades/s")


if __name__ == "__main__":
    main()
