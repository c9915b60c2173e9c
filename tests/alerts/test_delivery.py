"""The outbox worker (cryptoctl.alerts.delivery) against the real PostgreSQL and Redis, with
loopback HTTP servers as the webhook and apprise targets. Events are inserted as the
aggregator inserts them (tests/alerts/outbox.py)."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from cryptoctl.alerts.delivery import DeliveryWorker, alerts_channel, backoff_ms
from cryptoctl.cache.client import redis_client
from cryptoctl.settings import Settings
from tests.alerts.outbox import T0, event_row, fire

HOOK = "/hook"


@pytest.fixture
def fast(settings: Settings) -> Settings:
    """Retries due at once (1 ms backoff) and a small budget."""
    return replace(settings, alert_backoff="1ms", alert_attempts=4)


@pytest.fixture
def channel(settings: Settings) -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """The events published on the Redis alerts channel so far (subscribed before any)."""
    pubsub = redis_client(settings).pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(alerts_channel(settings))
    pubsub.get_message(timeout=1.0)  # the subscription's confirmation
    seen: list[dict[str, Any]] = []

    def read() -> list[dict[str, Any]]:
        while (message := pubsub.get_message(timeout=0.2)) is not None:
            seen.append(json.loads(message["data"]))
        return seen

    yield read
    pubsub.close()


def failing_first(n: int, status: int = 503) -> Callable[[Request], Response]:
    calls = {"n": 0}

    def handler(request: Request) -> Response:
        calls["n"] += 1
        return Response("busy", status=status) if calls["n"] <= n else Response("ok")

    return handler


def until(done: Callable[[], bool], worker: DeliveryWorker, passes: int = 50) -> None:
    """Delivery passes until ``done`` (a bounded number, not a time)."""
    for _ in range(passes):
        worker.deliver_due()
        if done():
            return
        time.sleep(0.01)
    raise AssertionError("delivery never reached the wanted state")


@given(st.integers(1, 40), st.integers(1, 60_000), st.floats(0, 1, exclude_max=True))
def test_backoff_doubles_is_capped_and_jittered_to_half_or_more(attempts: int, base: int, r: float) -> None:
    full = min(base * 2 ** (attempts - 1), 300_000)
    assert full / 2 - 1 <= backoff_ms(attempts, base, lambda: r) <= full
    assert backoff_ms(attempts, base, lambda: r) <= backoff_ms(attempts + 1, base, lambda: r)


def test_a_webhook_failing_at_first_gets_the_event_once_it_answers(
    fast: Settings, httpserver: HTTPServer, channel: Callable[[], list[dict[str, Any]]]
) -> None:
    url = httpserver.url_for(HOOK)
    httpserver.expect_request(HOOK, method="POST").respond_with_handler(failing_first(2))
    event_id = fire(fast, 3, price=100_012.5, time_ms=T0, notify=(url,))
    worker = DeliveryWorker(fast)
    until(lambda: event_row(fast, event_id)["delivered"] == "delivered", worker)
    requests = [request for request, _ in httpserver.log]
    assert len(requests) == 3  # two 503s, then the one that took it
    assert {r.headers["Idempotency-Key"] for r in requests} == {str(event_id)}
    body = json.loads(requests[-1].data)
    assert {k: body[k] for k in ("id", "alert_id", "symbol", "source", "quote", "price", "time")} == {
        "id": event_id, "alert_id": 3, "symbol": "BTC", "source": "binance", "quote": "USDT",
        "price": 100012.5, "time": "2026-11-01T00:00:00Z",
    }  # fmt: skip
    row = event_row(fast, event_id)
    assert (row["published"], row["delivered_targets"], row["attempts"]) == (True, [url], 3)
    assert row["delivered_at"] is not None and "HTTP 503" in str(row["last_error"])
    assert [e["id"] for e in channel()] == [event_id]  # published once, not per attempt
    worker.deliver_due()
    assert len(httpserver.log) == 3  # nothing more to do


def test_each_target_takes_an_event_once_while_another_is_retried(
    fast: Settings, httpserver: HTTPServer
) -> None:
    good, bad = httpserver.url_for("/good"), httpserver.url_for("/bad")
    httpserver.expect_request("/good").respond_with_data("ok")
    httpserver.expect_request("/bad").respond_with_handler(failing_first(2, status=500))
    event_id = fire(fast, 1, notify=(good, bad))
    until(lambda: event_row(fast, event_id)["delivered"] == "delivered", DeliveryWorker(fast))
    paths = Counter(request.path for request, _ in httpserver.log)
    assert paths == {"/good": 1, "/bad": 3}
    assert event_row(fast, event_id)["delivered_targets"] == [good, bad]


def test_an_exhausted_retry_budget_is_failed_and_shown_in_history(
    fast: Settings, httpserver: HTTPServer, cli: Any
) -> None:
    httpserver.expect_request(HOOK).respond_with_data("down", status=500)
    event_id = fire(fast, 5, notify=(httpserver.url_for(HOOK),))
    worker = DeliveryWorker(fast)
    until(lambda: event_row(fast, event_id)["delivered"] == "failed", worker)
    row = event_row(fast, event_id)
    port = httpserver.port
    assert (row["attempts"], row["last_error"]) == (4, f"http://localhost:{port}: HTTP 500")
    assert len(httpserver.log) == 4
    assert (worker.stats().failed, worker.stats().retries, worker.stats().delivered) == (1, 3, 0)
    worker.deliver_due()
    assert len(httpserver.log) == 4  # failed is final
    [shown] = json.loads(cli("alerts", "history", "-f", "json").stdout)
    assert (shown["id"], shown["delivered"]) == (event_id, "failed")


def test_an_event_without_targets_is_delivered_once_published(
    fast: Settings, channel: Callable[[], list[dict[str, Any]]]
) -> None:
    event_id = fire(fast, 9, symbol="ETH", price=2999.5, quote="USD", source="coinbase")
    worker = DeliveryWorker(fast)
    assert worker.deliver_due() == 1 and worker.deliver_due() == 0
    assert event_row(fast, event_id)["delivered"] == "delivered"
    [published] = channel()
    assert (published["symbol"], published["price"], published["source"]) == ("ETH", 2999.5, "coinbase")
    assert [e.id for e in worker.recent()] == [event_id]


def test_an_apprise_json_target_gets_a_notification(fast: Settings, httpserver: HTTPServer) -> None:
    httpserver.expect_request(HOOK, method="POST").respond_with_data("ok")
    target = f"json://127.0.0.1:{httpserver.port}{HOOK}"
    event_id = fire(fast, 4, symbol="SOL", price=157.5, notify=(target,))
    DeliveryWorker(fast).deliver_due()
    assert event_row(fast, event_id)["delivered"] == "delivered"
    [(request, _)] = httpserver.log
    body = json.loads(request.data)
    assert "SOL" in body["title"] and "157.5" in body["message"]


def test_two_workers_at_once_never_deliver_an_event_twice(
    fast: Settings, httpserver: HTTPServer, channel: Callable[[], list[dict[str, Any]]]
) -> None:
    seen: list[str] = []
    lock = threading.Lock()

    def slow(request: Request) -> Response:
        with lock:
            seen.append(request.headers["Idempotency-Key"])
        time.sleep(0.02)  # so the two workers overlap
        return Response("ok")

    httpserver.expect_request(HOOK).respond_with_handler(slow)
    ids = [fire(fast, 2, notify=(httpserver.url_for(HOOK),)) for _ in range(20)]
    workers = [DeliveryWorker(fast, poll_s=0.1).start() for _ in range(2)]
    try:
        for _ in range(300):
            if all(event_row(fast, i)["delivered"] == "delivered" for i in ids):
                break
            time.sleep(0.05)
    finally:
        for w in workers:
            w.stop()
    assert sorted(seen, key=int) == [str(i) for i in ids]  # each exactly once
    assert sorted(e["id"] for e in channel()) == ids
    assert sum(w.stats().delivered for w in workers) == 20


def test_a_running_worker_wakes_on_a_new_event(fast: Settings) -> None:
    """LISTEN/NOTIFY: delivered well before the (long) poll interval would have found it."""
    worker = DeliveryWorker(fast, poll_s=120).start()
    try:
        time.sleep(0.5)  # the worker is listening (its first pass found nothing)
        event_id = fire(fast, 6)
        for _ in range(200):
            if event_row(fast, event_id)["delivered"] == "delivered":
                break
            time.sleep(0.05)
        assert event_row(fast, event_id)["delivered"] == "delivered"
    finally:
        worker.stop()


def test_redis_down_leaves_the_event_to_be_published_later_and_targets_are_not_resent(
    fast: Settings, httpserver: HTTPServer, channel: Callable[[], list[dict[str, Any]]]
) -> None:
    httpserver.expect_request(HOOK).respond_with_data("ok")
    event_id = fire(fast, 2, notify=(httpserver.url_for(HOOK),))
    DeliveryWorker(replace(fast, redis_url="redis://127.0.0.1:1/0")).deliver_due()
    row = event_row(fast, event_id)
    assert (row["published"], row["delivered"], row["attempts"]) == (False, "pending", 1)
    assert str(row["last_error"]).startswith("Redis: ConnectionError")
    until(lambda: event_row(fast, event_id)["delivered"] == "delivered", DeliveryWorker(fast))
    assert len(httpserver.log) == 1  # the webhook took it the first time
    assert [e["id"] for e in channel()] == [event_id]


def test_the_retry_settings_are_checked_when_read() -> None:
    from cryptoctl.errors import ConfigError
    from cryptoctl.settings import load_settings

    defaults = load_settings(environ={})
    assert (defaults.alert_attempts, defaults.alert_backoff_ms) == (8, 5_000)
    env = {"CRYPTOCTL_ALERT_ATTEMPTS": "3", "CRYPTOCTL_ALERT_BACKOFF": "1m30s"}
    assert load_settings(environ=env).alert_backoff_ms == 90_000
    for bad in ({"CRYPTOCTL_ALERT_BACKOFF": "soon"}, {"CRYPTOCTL_ALERT_BACKOFF": "0s"},
                {"CRYPTOCTL_ALERT_ATTEMPTS": "0"}):  # fmt: skip
        with pytest.raises(ConfigError, match="alert_"):
            load_settings(environ=bad)


def test_a_redis_outage_longer_than_the_budget_fails_no_event(
    fast: Settings, channel: Callable[[], list[dict[str, Any]]]
) -> None:
    """The retry budget is the notify targets': an event whose only outstanding channel is
    Redis stays pending through any number of tries, and is published once Redis is back."""
    event_id = fire(fast, 3)
    down = DeliveryWorker(replace(fast, redis_url="redis://127.0.0.1:1/0"))
    for _ in range(fast.alert_attempts + 2):
        down.deliver_due()
        time.sleep(0.01)
    row = event_row(fast, event_id)
    assert (row["published"], row["delivered"]) == (False, "pending")
    assert row["attempts"] > fast.alert_attempts
    until(lambda: event_row(fast, event_id)["delivered"] == "delivered", DeliveryWorker(fast))
    assert [e["id"] for e in channel()] == [event_id]


def test_a_failed_event_is_still_published_once_redis_is_back(
    fast: Settings, httpserver: HTTPServer, channel: Callable[[], list[dict[str, Any]]]
) -> None:
    httpserver.expect_request(HOOK).respond_with_data("down", status=500)
    event_id = fire(fast, 4, notify=(httpserver.url_for(HOOK),))
    until(lambda: event_row(fast, event_id)["delivered"] == "failed",
          DeliveryWorker(replace(fast, redis_url="redis://127.0.0.1:1/0")))  # fmt: skip
    assert len(httpserver.log) == fast.alert_attempts
    until(lambda: event_row(fast, event_id)["published"], DeliveryWorker(fast))
    assert event_row(fast, event_id)["delivered"] == "failed"  # and its target is not retried
    assert len(httpserver.log) == fast.alert_attempts
    assert [e["id"] for e in channel()] == [event_id]


@pytest.mark.parametrize("bad", ["http://host:abc/x", f"http://{'a' * 300}/x", "http://[::1"])
def test_a_target_the_client_cannot_use_fails_alone_and_blocks_no_other_event(
    fast: Settings, httpserver: HTTPServer, bad: str
) -> None:
    """A target URL stored by hand (`alerts add` refuses these) that makes the client raise
    is that target's failure: its event is tried and failed, the next one delivered."""
    httpserver.expect_request(HOOK).respond_with_data("ok")
    broken = fire(fast, 6, notify=(bad,))
    fine = fire(fast, 7, notify=(httpserver.url_for(HOOK),))
    worker = DeliveryWorker(fast)
    until(lambda: event_row(fast, fine)["delivered"] == "delivered", worker)
    until(lambda: event_row(fast, broken)["delivered"] == "failed", worker)
    assert bad not in str(event_row(fast, broken)["last_error"])  # a URL may carry a token
