"""CoinGecko into the real local broker, against a local server in CoinGecko's shapes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from cryptoctl.producer import ProducerOptions, ProducerRun, ProducerSummary
from cryptoctl.settings import Settings
from cryptoctl.sources.coingecko import CoinGeckoConfig, CoinGeckoSource, coingecko_reachable
from tests.helpers import consume_all

T1, T2 = 1_700_000_000, 1_700_000_030
IDS = {"BTC": "bitcoin", "ETH": "ethereum"}


def quote(usd: Any, updated: int) -> dict[str, Any]:
    return {
        "usd": usd,
        "usd_market_cap": 1.0e12,
        "usd_24h_vol": 2.0e10,
        "usd_24h_change": 0.5,
        "last_updated_at": updated,
    }


def ok(btc: Any = 65000.0, eth: Any = 3200.0, t: int = T1) -> Response:
    return Response(orjson.dumps({"bitcoin": quote(btc, t), "ethereum": quote(eth, t)}), 200,
                    content_type="application/json")  # fmt: skip


def error(status: int, obj: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(obj), status, headers=headers, content_type="application/json")


class Script:
    """Answers the requests in order; sets ``stop`` once the last answer is given."""

    def __init__(self, stop: threading.Event, *answers: Callable[[], Response]) -> None:
        self.stop = stop
        self.answers = list(answers)
        self.times: list[float] = []
        self.headers: list[dict[str, str]] = []

    def __call__(self, request: Request) -> Response:
        self.times.append(time.monotonic())
        self.headers.append(dict(request.headers))
        answer = self.answers.pop(0)
        if not self.answers:
            self.stop.set()
        return answer()


def run_script(
    settings: Settings, httpserver: HTTPServer, *answers: Callable[[], Response], **config: Any
) -> tuple[ProducerSummary, Script]:
    stop = threading.Event()
    script = Script(stop, *answers)
    httpserver.expect_request("/api/v3/simple/price").respond_with_handler(script)
    cfg = CoinGeckoConfig(
        IDS,
        **({
            "interval_s": 0.05, "api_url": httpserver.url_for("/api/v3"),
            "request_timeout_s": 1.0, "poll_timeout_s": 5.0,
            "backoff_initial_s": 0.02, "backoff_max_s": 0.05, "max_attempts": 3,
        } | config),
    )  # fmt: skip
    summary = ProducerRun(settings, CoinGeckoSource(cfg), ProducerOptions(duration_s=30)).run(stop)
    assert summary.stopped_by == "stop"  # the process kept running until told to stop
    return summary, script


def topic_ticks(settings: Settings, n: int | None) -> list[dict[str, Any]]:
    messages = consume_all(settings, n=n, timeout=10)
    out = []
    for m in messages:
        tick = orjson.loads(m.value())
        assert m.key() == tick["symbol"].encode() and m.timestamp()[1] == tick["ts"]
        tick.pop("recv_ts")
        out.append(tick)
    return sorted(out, key=lambda t: (t["ts"], t["symbol"]))


def expected(symbol: str, price: float, t: int) -> dict[str, Any]:
    return {
        "v": 1, "symbol": symbol, "quote": "USD", "price": price, "qty": None, "ts": t * 1000,
        "source": "coingecko", "market_cap": 1.0e12, "volume_24h": 2.0e10, "change_24h_pct": 0.5,
    }  # fmt: skip


def counters(s: ProducerSummary) -> dict[str, int]:
    return {
        "produced": s.produced, "delivered": s.delivered, "failed": s.failed,
        "unchanged": s.unchanged, "invalid": s.invalid, "source_errors": s.source_errors,
    }  # fmt: skip


def test_normal_polls_and_unchanged_quotes(settings: Settings, httpserver: HTTPServer) -> None:
    summary, script = run_script(
        settings, httpserver, ok, ok, lambda: ok(65100.0, 3210.0, T2), api_key="CG-demo"
    )
    assert topic_ticks(settings, 4) == [
        expected("BTC", 65000.0, T1), expected("ETH", 3200.0, T1),
        expected("BTC", 65100.0, T2), expected("ETH", 3210.0, T2),
    ]  # fmt: skip
    assert counters(summary) == {
        "produced": 4, "delivered": 4, "failed": 0, "unchanged": 2, "invalid": 0,
        "source_errors": 0,
    }  # fmt: skip
    assert summary.last_price == {"BTC": 65100.0, "ETH": 3210.0}
    assert script.headers[0]["X-Cg-Demo-Api-Key"] == "CG-demo"


def test_429_with_retry_after_is_honoured(settings: Settings, httpserver: HTTPServer) -> None:
    limited = error(429, {"status": {"error_code": 429, "error_message": "Throttled"}},
                    {"Retry-After": "0.4"})  # fmt: skip
    summary, script = run_script(settings, httpserver, lambda: limited, ok)
    assert script.times[1] - script.times[0] >= 0.4  # not the 20 ms backoff
    assert topic_ticks(settings, 2) == [expected("BTC", 65000.0, T1), expected("ETH", 3200.0, T1)]
    assert summary.retries == 1 and summary.source_errors == 0 and summary.delivered == 2


def test_429_without_retry_after_backs_off(settings: Settings, httpserver: HTTPServer) -> None:
    limited = error(429, {"error": "rate limit"})
    summary, _ = run_script(settings, httpserver, lambda: limited, lambda: limited, ok)
    assert len(topic_ticks(settings, 2)) == 2
    assert summary.retries == 2 and summary.source_errors == 0


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_retried_then_poll_given_up(
    settings: Settings, httpserver: HTTPServer, status: int
) -> None:
    failing = error(status, {"error": "upstream"})
    answers = [lambda: failing] * 3 + [ok]  # 3 attempts = one poll given up, then a good poll
    summary, _ = run_script(settings, httpserver, *answers)
    assert topic_ticks(settings, 2) == [expected("BTC", 65000.0, T1), expected("ETH", 3200.0, T1)]
    assert summary.retries == 2 and summary.source_errors == 1 and summary.delivered == 2
    assert f"HTTP {status}" in summary.last_problem


def test_timeout_is_retried(settings: Settings, httpserver: HTTPServer) -> None:
    def slow() -> Response:
        time.sleep(0.6)
        return ok()

    summary, _ = run_script(
        settings, httpserver, slow, lambda: ok(t=T2), request_timeout_s=0.3, backoff_initial_s=0.4,
        backoff_max_s=0.4,
    )  # fmt: skip
    ticks = topic_ticks(settings, 2)
    assert ticks == [expected("BTC", 65000.0, T2), expected("ETH", 3200.0, T2)]
    assert summary.retries == 1 and summary.source_errors == 0


def test_html_page_and_malformed_json_produce_nothing(settings: Settings, httpserver: HTTPServer) -> None:
    html = Response("<!DOCTYPE html><html><body>Just a moment…</body></html>", 200,
                    content_type="text/html")  # fmt: skip
    broken = Response(b'{"bitcoin": {"usd": ', 200, content_type="application/json")
    summary, _ = run_script(settings, httpserver, lambda: html, lambda: broken, ok)
    assert len(topic_ticks(settings, 2)) == 2
    assert summary.source_errors == 2 and summary.invalid == 0 and summary.produced == 2


def test_missing_coin_and_bad_numbers_are_counted(settings: Settings, httpserver: HTTPServer) -> None:
    only_eth = Response(orjson.dumps({"ethereum": quote(3200.0, T1)}), 200)
    summary, _ = run_script(
        settings, httpserver, lambda: only_eth, lambda: ok(btc=0, eth=-5.0, t=T2),
        lambda: ok(btc=None, eth="1", t=T2),
    )  # fmt: skip
    assert topic_ticks(settings, None) == [expected("ETH", 3200.0, T1)]
    assert summary.invalid == 5 and summary.produced == 1 and summary.source_errors == 0


def test_bad_key_is_explained_not_retried(settings: Settings, httpserver: HTTPServer) -> None:
    bad_key = error(401, {"status": {"error_code": 10002, "error_message": "API Key Missing"}})
    summary, script = run_script(settings, httpserver, lambda: bad_key, ok)
    assert len(script.times) == 2  # one failed poll (no retry), then the next poll
    assert summary.retries == 0 and summary.source_errors == 1 and summary.delivered == 2
    assert "API Key Missing (error code 10002)" in summary.last_problem
    assert "--api-key" in summary.last_problem


def test_request_budget_spaces_the_polls(settings: Settings, httpserver: HTTPServer) -> None:
    """A budget of 2 a minute (window shortened for the test) holds back the third poll."""
    import cryptoctl.sources.coingecko as cg

    stop = threading.Event()
    script = Script(stop, ok, ok, ok)
    httpserver.expect_request("/api/v3/simple/price").respond_with_handler(script)
    src = CoinGeckoSource(CoinGeckoConfig(IDS, interval_s=0.01,
                          api_url=httpserver.url_for("/api/v3"), max_requests_per_minute=2))  # fmt: skip
    src.budget = cg.RequestBudget(2, window_s=0.8)
    ProducerRun(settings, src, ProducerOptions(duration_s=30)).run(stop)
    # The budget counts from when a request is sent; the server stamps arrival, and the
    # first request also sets up the connection: allow that skew, not a budget overrun.
    assert script.times[2] - script.times[0] >= 0.8 - 0.05
    assert len(script.times) >= 3


def test_reachable_probe(settings: Settings, httpserver: HTTPServer) -> None:
    from dataclasses import replace

    httpserver.expect_request("/api/v3/ping").respond_with_json({"gecko_says": "(V3) To the Moon!"})
    up = replace(settings, coingecko_api_url=httpserver.url_for("/api/v3"))
    assert coingecko_reachable(up).ok
    down = replace(settings, coingecko_api_url="http://127.0.0.1:9/api/v3")
    probe = coingecko_reachable(down, timeout_s=0.5)
    assert not probe.ok and "cannot reach" in probe.detail
