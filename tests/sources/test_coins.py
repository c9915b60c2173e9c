from __future__ import annotations

import pytest

from cryptoctl.errors import UsageError
from cryptoctl.sources.coins import COINS, parse_coin_ids, parse_symbols, resolve_coin_ids


def test_symbols_are_upper_cased_deduplicated_and_ordered() -> None:
    assert parse_symbols(" btc,ETH, btc ,,sol") == ["BTC", "ETH", "SOL"]


@pytest.mark.parametrize("text", ["", " , ", "BTC,ET-H"])
def test_bad_symbol_lists_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError):
        parse_symbols(text)


def test_major_coins_map_to_coingecko_ids() -> None:
    assert resolve_coin_ids(["BTC", "ETH", "SOL"], {}) == {
        "BTC": "bitcoin",
        "ETH": "ethereum",
        "SOL": "solana",
    }
    assert all(c.start_price > 0 and c.trade_size > 0 for c in COINS.values())


def test_overrides_win_and_unknown_symbols_are_named() -> None:
    overrides = parse_coin_ids(["wif=dogwifcoin", "BTC=wrapped-bitcoin"])
    assert resolve_coin_ids(["BTC", "WIF"], overrides) == {
        "BTC": "wrapped-bitcoin",
        "WIF": "dogwifcoin",
    }
    with pytest.raises(UsageError) as err:
        resolve_coin_ids(["BTC", "NOPE1", "NOPE2"], {})
    assert "NOPE1, NOPE2" in err.value.message
    assert "--coin-id NOPE1=" in (err.value.hint or "")


@pytest.mark.parametrize("pair", ["BTC", "=bitcoin", "BTC="])
def test_bad_coin_id_overrides(pair: str) -> None:
    with pytest.raises(UsageError):
        parse_coin_ids([pair])
