"""Symbols of the major coins: their CoinGecko ids and realistic prices for the synthetic feed."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from cryptoctl.errors import UsageError
from cryptoctl.tick import MAX_SYMBOL_LEN, is_code


@dataclass(frozen=True)
class Coin:
    symbol: str
    coingecko_id: str
    start_price: float  # USD, a realistic level for the synthetic market
    trade_size: float  # a typical trade, in coins (synthetic qty scale)
    annual_vol: float = 0.7  # annualised volatility of the synthetic GBM


COINS: dict[str, Coin] = {
    c.symbol: c
    for c in (
        Coin("BTC", "bitcoin", 65_000.0, 0.05, 0.55),
        Coin("ETH", "ethereum", 3_200.0, 0.8, 0.7),
        Coin("USDT", "tether", 1.0, 500.0, 0.01),
        Coin("BNB", "binancecoin", 580.0, 3.0, 0.6),
        Coin("SOL", "solana", 150.0, 12.0, 0.9),
        Coin("XRP", "ripple", 0.55, 2_000.0, 0.8),
        Coin("USDC", "usd-coin", 1.0, 500.0, 0.01),
        Coin("ADA", "cardano", 0.45, 2_000.0, 0.8),
        Coin("DOGE", "dogecoin", 0.15, 8_000.0, 1.0),
        Coin("TRX", "tron", 0.12, 8_000.0, 0.6),
        Coin("TON", "the-open-network", 6.5, 150.0, 0.8),
        Coin("AVAX", "avalanche-2", 35.0, 30.0, 0.9),
        Coin("DOT", "polkadot", 7.0, 150.0, 0.8),
        Coin("LINK", "chainlink", 15.0, 70.0, 0.85),
        Coin("MATIC", "matic-network", 0.7, 1_500.0, 0.9),
        Coin("POL", "polygon-ecosystem-token", 0.5, 2_000.0, 0.9),
        Coin("LTC", "litecoin", 80.0, 12.0, 0.7),
        Coin("BCH", "bitcoin-cash", 400.0, 2.5, 0.75),
        Coin("SHIB", "shiba-inu", 0.000022, 40_000_000.0, 1.1),
        Coin("XLM", "stellar", 0.11, 9_000.0, 0.75),
        Coin("ATOM", "cosmos", 8.0, 120.0, 0.8),
        Coin("UNI", "uniswap", 9.0, 100.0, 0.9),
        Coin("ETC", "ethereum-classic", 25.0, 40.0, 0.8),
        Coin("XMR", "monero", 160.0, 6.0, 0.6),
        Coin("NEAR", "near", 5.5, 180.0, 0.95),
        Coin("APT", "aptos", 8.5, 120.0, 0.95),
        Coin("ARB", "arbitrum", 0.9, 1_100.0, 0.95),
        Coin("OP", "optimism", 2.0, 500.0, 0.95),
        Coin("FIL", "filecoin", 5.0, 200.0, 0.9),
        Coin("ICP", "internet-computer", 10.0, 100.0, 0.9),
        Coin("HBAR", "hedera-hashgraph", 0.08, 12_000.0, 0.9),
        Coin("SUI", "sui", 1.2, 800.0, 1.0),
        Coin("PEPE", "pepe", 0.00001, 80_000_000.0, 1.2),
        Coin("AAVE", "aave", 100.0, 10.0, 0.9),
        Coin("ALGO", "algorand", 0.18, 5_000.0, 0.85),
    )
}


def parse_symbols(values: str | Iterable[str]) -> list[str]:
    """``"btc, eth"`` or ``["btc", "eth,SOL"]`` -> ["BTC", "ETH", ...]: upper-cased,
    de-duplicated, order kept. The one parser of every command's symbols."""
    texts = [values] if isinstance(values, str) else list(values)
    out: list[str] = []
    for raw in (part for text in texts for part in text.split(",")):
        symbol = raw.strip().upper()
        if not symbol:
            continue
        if not raw.isascii() or not is_code(symbol):  # ASCII first: "ß".upper() is "SS"
            raise UsageError(
                f"invalid symbol {raw.strip()!r}",
                hint=f"symbols are 1-{MAX_SYMBOL_LEN} ASCII letters/digits, e.g. BTC,ETH",
            )
        if symbol not in out:
            out.append(symbol)
    if not out:
        raise UsageError("no symbols given", hint="e.g. --symbols BTC,ETH")
    return out


def parse_coin_ids(pairs: Iterable[str]) -> dict[str, str]:
    """``["PEPE=pepe"]`` -> {"PEPE": "pepe"} (the --coin-id overrides)."""
    out: dict[str, str] = {}
    for pair in pairs:
        symbol, sep, coin_id = pair.partition("=")
        if not sep or not symbol.strip() or not coin_id.strip():
            raise UsageError(f"invalid --coin-id {pair!r}", hint="use SYMBOL=coingecko-id, e.g. PEPE=pepe")
        out[symbol.strip().upper()] = coin_id.strip()
    return out


def resolve_coin_ids(symbols: Iterable[str], overrides: Mapping[str, str]) -> dict[str, str]:
    """symbol -> CoinGecko id, overrides first; an unknown symbol is a UsageError."""
    ids: dict[str, str] = {}
    unknown: list[str] = []
    for symbol in symbols:
        coin_id = overrides.get(symbol) or (COINS[symbol].coingecko_id if symbol in COINS else "")
        if coin_id:
            ids[symbol] = coin_id
        else:
            unknown.append(symbol)
    if unknown:
        raise UsageError(
            f"unknown symbol{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}: no CoinGecko id known",
            hint=f"map it with --coin-id {unknown[0]}=<coingecko-id>",
        )
    return ids


def synthetic_coin(symbol: str) -> Coin:
    """The table's coin, or a made-up mid-priced coin for a symbol it does not know."""
    if symbol in COINS:
        return COINS[symbol]
    seed = sum(ord(c) * 31**i for i, c in enumerate(symbol)) % 1000
    return Coin(symbol, symbol.lower(), 1.0 + seed / 10, 100.0, 0.9)
