"""The pure parts of the exchange feeds: the gap marker's encoding, the status line's
width, the settings' default addresses."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
import pytest

from cryptoctl.exchanges.trade import Gap, Market, gap_message, parse_gap
from cryptoctl.producer.loop import ProducerStats
from cryptoctl.render.produce import feed_rows, status_line
from cryptoctl.settings import Settings, load_settings
from cryptoctl.sources.base import FeedStats, MarketStats
from cryptoctl.sources.exchange import exchange_defaults

GAP = Gap(Market("binance", "BTC", "USDT"), 101, 120, 1_767_225_600_000, 1_767_225_601_000,
          "not in the exchange's REST history")  # fmt: skip


def test_a_gap_marker_round_trips_through_json() -> None:
    message = gap_message(GAP)
    assert message == {
        "v": 1, "kind": "gap", "source": "binance", "symbol": "BTC", "quote": "USDT",
        "first_id": 101, "last_id": 120, "after_ts": 1_767_225_600_000,
        "before_ts": 1_767_225_601_000, "reason": "not in the exchange's REST history",
    }  # fmt: skip
    assert parse_gap(orjson.loads(orjson.dumps(message))) == GAP
    unknown_first = GAP._replace(first_id=-1)  # --since, and the history failed at once
    assert parse_gap(gap_message(unknown_first)) == unknown_first


@pytest.mark.parametrize(
    "change",
    [
        {"kind": "tick"}, {"v": 2}, {"v": True}, {"first_id": "101"}, {"last_id": 100},
        {"first_id": -2}, {"after_ts": 1_767_225_602_000}, {"symbol": ""}, {"reason": None},
        {"first_id": True}, {"extra": 1},
    ],
)  # fmt: skip
def test_anything_but_an_exact_gap_marker_is_not_a_gap(change: dict[str, Any]) -> None:
    assert parse_gap(gap_message(GAP) | change) is None


def test_a_tick_or_garbage_is_not_a_gap() -> None:
    tick = {"v": 1, "symbol": "BTC", "quote": "USDT", "price": 1.0, "qty": 1.0, "ts": 1, "source": "x",
            "recv_ts": 1, "trade_id": 5, "side": "buy"}  # fmt: skip
    assert parse_gap(tick) is None
    assert parse_gap([1, 2]) is None
    missing = gap_message(GAP)
    del missing["reason"]
    assert parse_gap(missing) is None


def _stats(markets: int, *, big: bool, connected: bool = True, gaps: int = 0) -> ProducerStats:
    n = 9_876_543_210 if big else 42
    per = tuple(
        MarketStats(f"kraken {sym}/USD", n, 12_345.6 if big else 3.0, n, 1, 7, 3, 10, 0, 2, gaps)
        for sym in ["BTC", "ETH", "SOL", "DOGE", "XRP", "ADA", "AVAX", "LINK"][:markets]
    )
    feed = FeedStats(connected, 8, 7, 3 if big else 0, per)
    return ProducerStats(
        "kraken", "crypto-prices", n, n, 5 if big else 0, 0, 0, 0, 0, 0, 0, 1.0, 1.0, {}, "",
        feed=feed,
    )  # fmt: skip


@pytest.mark.parametrize("markets", [1, 2, 3, 8])
@pytest.mark.parametrize("big", [False, True])
def test_the_feed_status_line_fits_80_columns_and_keeps_the_alarms(markets: int, big: bool) -> None:
    line = status_line(_stats(markets, big=big, connected=not big, gaps=1))
    assert len(line) <= 80, line
    assert "open" in line
    if big:
        assert "failed" in line and "disconnected" in line
    if markets == 1 and not big:
        assert line.startswith("kraken BTC/USD 3/s #42 · delivered 42 · reconnects 7")


def test_two_markets_show_each_rate_and_last_id() -> None:
    line = status_line(_stats(2, big=False))
    assert line == "kraken BTC 3/s #42 ETH 3/s #42 · sent 42 · reconn 7 · gaps 6+0 open"


def _catching_up(stats: ProducerStats, behind: int | None) -> ProducerStats:
    assert stats.feed is not None
    markets = tuple(replace(m, rest_pages=1_234, catching_up=True, behind=behind)
                    for m in stats.feed.markets)  # fmt: skip
    return replace(stats, feed=replace(stats.feed, markets=markets))


@pytest.mark.parametrize("markets", [1, 3, 8])
@pytest.mark.parametrize("big", [False, True])
def test_a_catch_up_over_rest_is_on_the_status_line_unless_alarms_need_the_room(
    markets: int, big: bool
) -> None:
    stats = _stats(markets, big=big, connected=not big, gaps=1)
    line = status_line(_catching_up(stats, 5_000))
    history = status_line(_catching_up(stats, None))  # a --since history: its end unknown
    assert len(line) <= 80 and len(history) <= 80, (line, history)
    assert "open" in line and "open" in history
    if big:  # failing, disconnected: the alarms come first
        assert all("failed 5 · disconnected" in text for text in (line, history))
    else:
        assert f"catch-up {markets * 1_234:,}p {markets * 5_000:,} behind ·" in line
        assert f"catch-up {markets * 1_234:,}p ·" in history
    assert "catch" not in status_line(stats)


def test_one_market_catching_up_keeps_its_rate_and_last_id() -> None:
    line = status_line(_catching_up(_stats(1, big=False), 5_000))
    assert line == "kraken BTC/USD 3/s #42 · catch-up 1,234p 5,000 behind · sent 42 · gaps 3+0 open"


def test_the_summary_rows_say_what_the_status_line_says() -> None:
    stats = _stats(1, big=False, gaps=1)
    assert stats.feed is not None
    gap = gap_message(GAP._replace(market=Market("kraken", "BTC", "USD")))
    feed = replace(stats.feed, markets=(replace(stats.feed.markets[0], open_gaps=(gap,)),))
    rows = dict(feed_rows(feed, markers=1))
    assert rows["kraken BTC/USD"] == (
        "42 trades, 3/s, last #42, reconnects 7, gaps filled 3 (10 trades), open 1, duplicates"
        " dropped 2, REST pages 0"
    )
    assert rows["gap open"] == "kraken BTC/USD trades 101..120 (not in the exchange's REST history)"
    assert rows["gap markers"] == "1"


def test_the_default_addresses_are_the_wire_modules_and_env_overrides_them() -> None:
    defaults = Settings()
    for name, ws, rest in exchange_defaults():
        assert (getattr(defaults, f"{name}_ws_url"), getattr(defaults, f"{name}_rest_url")) == (ws, rest)
    env = {"CRYPTOCTL_COINBASE_WS_URL": "ws://127.0.0.1:1", "CRYPTOCTL_KRAKEN_REST_URL": "http://h:2"}
    settings = load_settings({}, environ=env)
    assert settings.coinbase_ws_url == "ws://127.0.0.1:1" and settings.kraken_rest_url == "http://h:2"
    assert settings.origins["coinbase_ws_url"] == "env"
