"""Exchange feed throughput: Binance ``@trade`` frames -> parse -> continuity -> validate ->
produce, in one process, from a minimal local server streaming as fast as it can.

    .venv/bin/python bench/bench_feed.py [--trades 300000] [--repeat 3] [--bootstrap HOST:PORT]

The server runs in a child process (so it does not share the GIL with the feed) and
sends pre-encoded combined-stream frames (``{"stream":"btcusdt@trade","data":{...}}``)
for two markets, ids consecutive, then stays connected. The feed is the real
ExchangeSource (reader thread, WireConnection, BinanceWire.parse, MarketContinuity, the
Kafka sender with acks=all, idempotence, lz4); the figure runs from the first frame to
the last delivery report, flush included. No REST is needed: the ids never jump.
Without --bootstrap it starts its own local broker, as bench_produce.py does.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_produce import fresh_topic, start_broker

from cryptoctl.exchanges.binance import WIRE
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trades", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    parser.add_argument("--bootstrap", help="an existing broker instead of a fresh local one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-feed-") as tmp:
        if args.bootstrap:
            settings = load_settings({"kafka_bootstrap": args.bootstrap}, environ={})
        else:
            settings = start_broker(Path(tmp))
        try:
            best = max(one_run(fresh_topic(settings), args.trades) for _ in range(args.repeat))
        finally:
            if not args.bootstrap:
                from cryptoctl.stack.local import stop_service

                stop_service(settings, "kafka")
    print(f"machine: {platform.machine()} python {platform.python_version()}, "
          f"{args.trades:,} trades, best of {args.repeat}")  # fmt: skip
    print(f"produce --source binance (@trade frames -> topic): {best:,.0f} trades/s")


if __name__ == "__main__":
    main()
