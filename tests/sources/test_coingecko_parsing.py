from __future__ import annotations

import orjson
import pytest

from cryptoctl.errors import UsageError
from cryptoctl.sources.coingecko import (
    PRO_URL,
    PUBLIC_URL,
    RequestBudget,
    endpoint,
    explain_error,
    parse_simple_price,
    retry_after_s,
)

IDS = {"BTC": "bitcoin", "ETH": "ethereum"}
RECV = 1_700_000_100_000


def quote(usd: object, updated: object = 1_700_000_000, **extra: object) -> dict:
    return {
        "usd": usd,
        "usd_market_cap": 1.2e12,
        "usd_24h_vol": 3.4e10,
        "usd_24h_change": -1.5,
        "last_updated_at": updated,
    } | extra


def body(obj: object) -> bytes:
    return orjson.dumps(obj)


def test_normal_response_gives_ticks_with_event_time_and_extras() -> None:
    parsed = parse_simple_price(
        body({"bitcoin": quote(65000.5), "ethereum": quote(3200, 1_700_000_005)}), IDS, {}, RECV
    )
    assert parsed.problems == [] and parsed.unchanged == 0
    btc, eth = parsed.ticks
    assert btc.to_dict() == {
        "v": 1, "symbol": "BTC", "quote": "USD", "price": 65000.5, "qty": None,
        "ts": 1_700_000_000_000, "source": "coingecko", "recv_ts": RECV,
        "market_cap": 1.2e12, "volume_24h": 3.4e10, "change_24h_pct": -1.5,
    }  # fmt: skip
    assert (eth.symbol, eth.ts) == ("ETH", 1_700_000_005_000)


def test_unchanged_last_updated_at_is_not_produced_again() -> None:
    data = body({"bitcoin": quote(65000.5), "ethereum": quote(3200)})
    parsed = parse_simple_price(data, IDS, {"BTC": 1_700_000_000_000}, RECV)
    assert [t.symbol for t in parsed.ticks] == ["ETH"] and parsed.unchanged == 1


@pytest.mark.parametrize(
    ("usd", "reason"),
    [(0, "> 0"), (-3, "> 0"), (None, "missing field 'price'"), ("1.0", "must be a number")],
)
def test_bad_prices_are_problems_not_ticks(usd: object, reason: str) -> None:
    parsed = parse_simple_price(body({"bitcoin": quote(usd), "ethereum": quote(1.0)}), IDS, {}, RECV)
    assert [t.symbol for t in parsed.ticks] == ["ETH"]
    assert len(parsed.problems) == 1 and parsed.problems[0].startswith("BTC (bitcoin)")
    assert reason in parsed.problems[0]


def test_missing_coin_and_missing_time() -> None:
    parsed = parse_simple_price(body({"ethereum": quote(1.0, None)}), IDS, {}, RECV)
    assert parsed.ticks == []
    assert parsed.problems == [
        "BTC (bitcoin): missing from the response",
        "ETH (ethereum): no usable last_updated_at (None)",
    ]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"<!DOCTYPE html><html>Just a moment...</html>", "CoinGecko sent an HTML page instead of JSON"),
        (b'{"bitcoin": {"usd": 1', "CoinGecko sent malformed JSON"),
        (b"", "CoinGecko sent an empty body"),
        (b'{"bitcoin": {"usd": NaN, "last_updated_at": 1}}', "CoinGecko sent malformed JSON"),
    ],
)
def test_unusable_bodies(raw: bytes, expected: str) -> None:
    parsed = parse_simple_price(raw, IDS, {}, RECV)
    assert parsed.ticks == [] and parsed.problems == [expected]


def test_error_shapes_are_explained_in_one_line() -> None:
    pro_on_public = body(
        {"status": {"error_code": 10010, "error_message": "If you are using Pro API key..."}}
    )
    line = explain_error(400, pro_on_public)
    assert line.startswith("CoinGecko answered HTTP 400: If you are using Pro API key...")
    assert "(error code 10010)" in line and "--key-type pro" in line
    assert "\n" not in line
    assert explain_error(401, body({"error": "invalid api key"})) == (
        "CoinGecko answered HTTP 401: invalid api key — check the API key and --key-type"
    )
    assert "rate limited" in explain_error(429, body({"status": {"error_code": 429}}))
    assert "HTML page" in explain_error(503, b"<html>down</html>")


def test_endpoints_by_key_type() -> None:
    assert endpoint("", None) == (PUBLIC_URL, {"accept": "application/json", "user-agent": "cryptoctl"})
    base, headers = endpoint("CG-x", None)
    assert base == PUBLIC_URL and headers["x-cg-demo-api-key"] == "CG-x"
    base, headers = endpoint("CG-x", "pro")
    assert base == PRO_URL and headers["x-cg-pro-api-key"] == "CG-x"
    assert endpoint("CG-x", "pro", "http://127.0.0.1:9/api/")[0] == "http://127.0.0.1:9/api"
    with pytest.raises(UsageError):
        endpoint("", "pro")


def test_budget_never_allows_more_than_the_limit_in_any_window() -> None:
    now = [0.0]
    budget = RequestBudget(3, window_s=60, clock=lambda: now[0])
    sent = []
    for _ in range(10):  # a client that always waits what the budget says
        now[0] += budget.delay()
        budget.record()
        sent.append(now[0])
    for i, t in enumerate(sent):
        assert sum(1 for s in sent if t - 60 < s <= t) <= 3, (i, sent)
    assert sent[:4] == [0.0, 0.0, 0.0, 60.0]


def test_retry_after_forms() -> None:
    assert retry_after_s("2") == 2.0
    assert retry_after_s(None) is None and retry_after_s("soon") is None
    assert retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
