"""Fake exchanges on loopback (Binance, Coinbase, Kraken) and known trade sets.

    from tests.fakes import fake_exchange, generate_trades, reference_candles

    market = Market("binance", "BTC", "USDT")
    with fake_exchange("binance", {market: generate_trades(1, 2000)}, live=500) as fx:
        fx.ws_url, fx.rest_url  # ws://127.0.0.1:<port>, http://127.0.0.1:<port>

Everything the fakes say is written from ../shared/EXCHANGES.md, independently of the
wire and REST modules they test.
"""

from tests.fakes.core import Bar, FakeExchange, Faults, Session, fake_exchange
from tests.fakes.trades import (
    MINUTE_MS,
    Candle,
    assign_micros,
    generate_trades,
    iso_us,
    reference_candles,
)

__all__ = [
    "MINUTE_MS",
    "Bar",
    "Candle",
    "FakeExchange",
    "Faults",
    "Session",
    "assign_micros",
    "fake_exchange",
    "generate_trades",
    "iso_us",
    "reference_candles",
]
