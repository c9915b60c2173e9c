"""The REST client's manners, against a loopback server: 429s waited out, a 418 never
retried, 5xx and dead addresses retried then named, Binance's weight header obeyed, and a
request-rate limit shared by every caller. Times are measured where the server sees them.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from cryptoctl.errors import ExchangeBanned, ExchangeReplyError, ExchangeUnavailable, ExitCode
from cryptoctl.exchanges import binance, coinbase, kraken
from cryptoctl.exchanges.rest import ExchangeBudget, RateLimit, RestClient, RetryPolicy, shared_budget
from cryptoctl.exchanges.trade import Market
from tests.conftest import free_port

FAST_RETRY = RetryPolicy(max_attempts=3, backoff_initial_s=0.01, backoff_max_s=0.02, timeout_s=5)


class Script:
    """Answers one scripted reply per request (the last repeats), noting arrival times."""

    def __init__(self, *replies: tuple[int, dict[str, str], object]) -> None:
        self.replies = list(replies)
        self.times: list[float] = []
        self.lock = threading.Lock()

    def __call__(self, request: Request) -> Response:
        with self.lock:
            self.times.append(time.time())
            status, headers, body = self.replies[min(len(self.times), len(self.replies)) - 1]
        return Response(json.dumps(body), status=status, headers=headers, content_type="application/json")


@pytest.fixture
def script(httpserver: HTTPServer) -> Callable[..., Script]:
    def serve(*replies: tuple[int, dict[str, str], object]) -> Script:
        httpserver.clear()
        handler = Script(*replies)
        httpserver.expect_request("/x").respond_with_handler(handler)
        return handler

    return serve


def client(
    httpserver: HTTPServer, limit: RateLimit = RateLimit(), retry: RetryPolicy = FAST_RETRY, **kw: object
) -> RestClient:
    return RestClient("binance", httpserver.url_for("/"), ExchangeBudget(limit), retry, **kw)  # type: ignore[arg-type]


OK = (200, {}, [])


def test_429_waits_out_retry_after_then_retries(
    httpserver: HTTPServer, script: Callable[..., Script]
) -> None:
    served = script((429, {"Retry-After": "1"}, {"code": -1003}), OK)
    rest = client(httpserver)
    assert rest.get_json("/x") == []
    first, second = served.times
    assert second - first >= 1.0
    assert rest.budget.waited_s >= 0.9


def test_retry_after_holds_every_caller_of_the_exchange(
    httpserver: HTTPServer, script: Callable[..., Script]
) -> None:
    served = script((429, {"Retry-After": "1"}, {}), OK)
    rest = client(httpserver)
    other = RestClient("binance", httpserver.url_for("/"), rest.budget, FAST_RETRY)  # e.g. `verify`
    rest.get("/x")
    other.get("/x")
    assert served.times[2] - served.times[0] >= 1.0


def test_a_retry_after_longer_than_cryptoctl_waits_is_an_error_at_once(
    httpserver: HTTPServer, script: Callable[..., Script]
) -> None:
    served = script((429, {"Retry-After": "3600"}, {}))
    with pytest.raises(ExchangeUnavailable) as caught:
        client(httpserver).get("/x")
    assert len(served.times) == 1
    assert "Retry-After 3600 s" in str(caught.value)


def test_418_is_never_retried(httpserver: HTTPServer, script: Callable[..., Script]) -> None:
    served = script(
        (418, {"Retry-After": "120"}, {"code": -1003, "msg": "Way too much request weight used"}), OK
    )
    with pytest.raises(ExchangeBanned) as caught:
        client(httpserver).get("/x")
    assert len(served.times) == 1
    host = f"{httpserver.host}:{httpserver.port}"
    assert caught.value.message == f"binance banned this IP address for 120 s (HTTP 418 from {host})"
    assert "until the ban ends" in str(caught.value)
    assert caught.value.exit_code == ExitCode.SERVICE_UNAVAILABLE


def test_5xx_is_retried_with_backoff_then_names_the_exchange_and_address(
    httpserver: HTTPServer, script: Callable[..., Script]
) -> None:
    served = script((503, {}, {"msg": "busy"}))
    with pytest.raises(ExchangeUnavailable) as caught:
        client(httpserver).get("/x")
    assert len(served.times) == 3
    host = f"{httpserver.host}:{httpserver.port}"
    assert caught.value.message.startswith(f"binance REST API at {host} failed: HTTP 503 (3 attempts in ")


def test_5xx_then_success_is_a_success(httpserver: HTTPServer, script: Callable[..., Script]) -> None:
    served = script((502, {}, {}), (500, {}, {}), (200, {}, {"ok": True}))
    assert client(httpserver).get_json("/x") == {"ok": True}
    assert len(served.times) == 3


def test_nothing_listening_is_retried_then_named() -> None:
    port = free_port()
    rest = RestClient("kraken", f"http://127.0.0.1:{port}", ExchangeBudget(RateLimit()), FAST_RETRY)
    with pytest.raises(ExchangeUnavailable) as caught:
        rest.get("/0/public/Time")
    assert rest.attempts == 3
    assert f"kraken REST API at 127.0.0.1:{port} failed: cannot connect" in caught.value.message


def test_a_4xx_is_an_unexpected_reply_not_retried(
    httpserver: HTTPServer, script: Callable[..., Script]
) -> None:
    served = script((400, {}, {"code": -1100, "msg": "Illegal characters"}))
    with pytest.raises(ExchangeReplyError) as caught:
        client(httpserver).get_json("/x")
    assert len(served.times) == 1
    assert "/x answered HTTP 400" in caught.value.message and caught.value.exit_code == ExitCode.DATA


def test_used_weight_near_the_limit_waits_for_the_next_window(
    httpserver: HTTPServer, script: Callable[..., Script]
) -> None:
    # Binance's rule on a 1 s window instead of a minute: 95 of 100 used, a 25-weight request waits
    served = script((200, {"X-MBX-USED-WEIGHT-1M": "95"}, []))
    limit = RateLimit(weight_limit=100, weight_header="x-mbx-used-weight-1m", weight_window_s=1.0)
    rest = client(httpserver, limit)
    rest.get("/x", weight=25)
    rest.get("/x", weight=25)
    first, second = served.times
    assert int(second) > int(first)  # the second request is in the server's next window
    assert rest.budget.waited_s > 0


def test_used_weight_well_under_the_limit_does_not_wait(
    httpserver: HTTPServer, script: Callable[..., Script]
) -> None:
    script((200, {"X-MBX-USED-WEIGHT-1M": "100"}, []))
    rest = client(httpserver, binance.LIMIT)
    for _ in range(3):
        rest.get("/x", weight=binance.WEIGHT_HISTORICAL_TRADES)
    assert rest.budget.waited_s == 0


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_binance_budget_slows_down_before_6000_a_minute() -> None:
    clock = FakeClock(1_800_000_010.0)  # 10 s into a minute
    budget = ExchangeBudget(binance.LIMIT, clock=clock, sleep=clock.sleep)
    budget.acquire(25)
    budget.observe_weight(5375)  # + 25 = 5400 = 90 % of 6000: still allowed
    budget.acquire(25)
    assert clock.slept == []
    budget.acquire(25)  # 5425 would pass 90 %: wait for the next minute
    assert clock.slept == [pytest.approx(50.6)]
    assert budget._used == 25


def test_request_rate_limit_is_a_sliding_window(
    httpserver: HTTPServer, script: Callable[..., Script]
) -> None:
    # On the budget's own clock (a fake one that sleeping moves): timing on a loaded
    # machine cannot make it fail or pass. The server sees every request.
    now = [1_000.0]
    sent: list[float] = []
    budget = ExchangeBudget(
        RateLimit(requests=4, window_s=0.5), clock=lambda: now[0],
        sleep=lambda s: now.__setitem__(0, now[0] + s),
    )
    served = script(OK)
    rest = client(httpserver, RateLimit())
    rest.budget = budget
    for _ in range(10):
        rest.get("/x")
        sent.append(now[0])
        now[0] += 0.01  # each request takes 10 ms
    gaps = [later - earlier for earlier, later in zip(sent, sent[4:], strict=False)]
    assert min(gaps) >= 0.5 - 1e-9  # never 5 in a 0.5 s window
    assert max(gaps) < 0.6  # and not held back longer than needed
    assert len(served.times) == 10


def test_kraken_rate_limit_in_a_200_body_is_retried(
    httpserver: HTTPServer, script: Callable[..., Script]
) -> None:
    served = script(
        (200, {}, {"error": ["EAPI:Rate limit exceeded"]}),
        (200, {}, {"error": [], "result": {"XXBTZUSD": [], "last": "0"}}),
    )
    history = kraken.KrakenHistory(
        httpserver.url_for("/x").removesuffix("/x"), budget=ExchangeBudget(RateLimit())
    )
    history.rest.retry = FAST_RETRY
    httpserver.clear()
    httpserver.expect_request("/0/public/Trades").respond_with_handler(served)
    assert list(history.trades_since(Market("kraken", "BTC", "USD"), 1_700_000_000_000)) == []
    assert len(served.times) == 2


def test_every_caller_of_one_exchange_shares_one_budget() -> None:
    assert binance.BinanceHistory().rest.budget is binance.BinanceHistory().rest.budget
    assert coinbase.CoinbaseHistory().rest.budget is shared_budget("coinbase", coinbase.LIMIT)
    assert kraken.KrakenHistory().rest.budget is not coinbase.CoinbaseHistory().rest.budget
    assert (coinbase.LIMIT.requests, kraken.LIMIT.requests, binance.LIMIT.weight_limit) == (10, 1, 6000)
