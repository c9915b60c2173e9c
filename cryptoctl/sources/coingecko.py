"""CoinGecko ``/simple/price``: quotes with market cap, 24h volume and change, event time
``last_updated_at``.

Keys: none (public), demo (``x-cg-demo-api-key``, public base URL) or pro
(``x-cg-pro-api-key``, pro base URL); ``api_url`` overrides the base. Every request,
retries included, goes through a per-minute budget that is never exceeded. A failing
request is retried (exponential backoff with jitter; ``Retry-After`` honoured on 429)
within a bounded time per poll, then that poll is given up and the next one comes on
schedule. Nothing that fails validation is produced: the reason is logged and counted.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_exponential_jitter

from cryptoctl.errors import InvalidTick, UsageError
from cryptoctl.settings import Settings
from cryptoctl.sources.base import SourceCounters, StopFlag, note_problem, now_ms
from cryptoctl.tick import ValidTick, checked_tick, validate_tick

SOURCE = "coingecko"
PUBLIC_URL = "https://api.coingecko.com/api/v3"
PRO_URL = "https://pro-api.coingecko.com/api/v3"
KEY_HEADERS = {"demo": "x-cg-demo-api-key", "pro": "x-cg-pro-api-key"}
DEFAULT_BUDGET = {"public": 30, "demo": 30, "pro": 250}  # requests per minute
_HTTP_RETRYABLE = {408, 425, 429, 500, 502, 503, 504}

# CoinGecko's own error codes, explained for a user.
_ERROR_HINTS = {
    10002: "no API key was sent: pass --api-key (or set COINGECKO_API_KEY)",
    10005: "the plan of this key does not include this endpoint",
    10010: "a Pro key was sent to the public/demo URL: use --key-type pro",
    10011: "a Demo key was sent to the Pro URL: use --key-type demo",
}


@dataclass(frozen=True)
class CoinGeckoConfig:
    coin_ids: Mapping[str, str]  # symbol -> CoinGecko id, in the order given
    interval_s: float = 10.0
    api_key: str = ""
    key_type: str | None = None  # "demo" | "pro"; None = demo when a key is given
    api_url: str = ""  # empty: chosen by the key type
    max_requests_per_minute: int | None = None  # None: by key type
    request_timeout_s: float = 10.0
    poll_timeout_s: float = 30.0  # all attempts of one poll, waits included
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 20.0
    max_attempts: int = 5  # per poll, first try included

    @property
    def plan(self) -> str:
        if not self.api_key:
            return "public"
        return self.key_type or "demo"

    @property
    def budget(self) -> int:
        return self.max_requests_per_minute or DEFAULT_BUDGET[self.plan]


def endpoint(api_key: str, key_type: str | None, api_url: str = "") -> tuple[str, dict[str, str]]:
    """(base URL, headers) for a key of the given type; UsageError for nonsense."""
    if key_type not in (None, "demo", "pro"):
        raise UsageError(f"unknown key type {key_type!r}", hint="use --key-type demo or pro")
    if key_type and not api_key:
        raise UsageError(
            f"--key-type {key_type} needs an API key", hint="pass --api-key or COINGECKO_API_KEY"
        )
    headers = {"accept": "application/json", "user-agent": "cryptoctl"}
    kind = key_type or "demo"
    if api_key:
        headers[KEY_HEADERS[kind]] = api_key
    base = api_url or (PRO_URL if api_key and kind == "pro" else PUBLIC_URL)
    return base.rstrip("/"), headers


def price_params(coin_ids: Mapping[str, str]) -> dict[str, str]:
    return {
        "ids": ",".join(dict.fromkeys(coin_ids.values())),
        "vs_currencies": "usd",
        "include_market_cap": "true",
        "include_24hr_vol": "true",
        "include_24hr_change": "true",
        "include_last_updated_at": "true",
    }


class RequestBudget:
    """At most ``limit`` requests in any ``window_s`` (a sliding window, not a bucket)."""

    def __init__(
        self, limit: int, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if limit < 1:
            raise UsageError("the request budget must be at least 1 per minute")
        self.limit = limit
        self.window_s = window_s
        self.clock = clock
        self._sent: deque[float] = deque()

    def delay(self) -> float:
        """Seconds until one more request is allowed (0 = now)."""
        now = self.clock()
        while self._sent and self._sent[0] <= now - self.window_s:
            self._sent.popleft()
        if len(self._sent) < self.limit:
            return 0.0
        return self._sent[0] + self.window_s - now

    def record(self) -> None:
        self._sent.append(self.clock())


# --- responses -----------------------------------------------------------------------


def _body_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def explain_error(status: int, body: bytes) -> str:
    """One line for a CoinGecko error response (any of its error body shapes)."""
    obj = _body_json(body)
    code: Any = None
    message = ""
    if isinstance(obj, dict):
        inner = obj.get("status") if isinstance(obj.get("status"), dict) else obj.get("error")
        if isinstance(inner, dict):
            code = inner.get("error_code")
            message = str(inner.get("error_message") or inner.get("message") or "")
        elif isinstance(inner, str):
            message = inner
    if not message:
        message = _describe_body(body) if obj is None else "no error message"
    line = f"CoinGecko answered HTTP {status}: {message}"
    if code is not None:
        line += f" (error code {code})"
    hint = _ERROR_HINTS.get(code) if isinstance(code, int) else None
    if hint is None and status in (401, 403):
        hint = "check the API key and --key-type"
    if hint is None and status == 429:
        hint = "rate limited: lower --max-requests-per-minute or raise --interval"
    return f"{line} — {hint}" if hint else line


def _describe_body(body: bytes) -> str:
    head = body.lstrip()[:200].lower()
    if head.startswith((b"<!doctype", b"<html", b"<")):
        return "an HTML page instead of JSON"
    if not head:
        return "an empty body"
    return "malformed JSON"


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


@dataclass
class PriceParse:
    ticks: list[ValidTick]
    unchanged: int
    problems: list[str]
    unusable: bool = False  # the whole body: not JSON, an HTML page, an error object


def parse_simple_price(
    body: bytes, coin_ids: Mapping[str, str], last_seen: Mapping[str, int], recv_ts: int
) -> PriceParse:
    """A ``/simple/price`` body -> valid ticks, the unchanged count, the problems.

    ``last_seen`` (symbol -> event time already produced) is read, not updated.
    """
    obj = _body_json(body)
    if obj is None:
        return PriceParse([], 0, [f"CoinGecko sent {_describe_body(body)}"], unusable=True)
    if not isinstance(obj, dict) or "status" in obj or "error" in obj:
        return PriceParse([], 0, [explain_error(200, body)], unusable=True)
    ticks: list[ValidTick] = []
    problems: list[str] = []
    unchanged = 0
    for symbol, coin_id in coin_ids.items():
        quote = obj.get(coin_id)
        try:
            tick = _quote_tick(symbol, coin_id, quote, recv_ts)
        except InvalidTick as exc:
            problems.append(f"{symbol} ({coin_id}): {exc.reason}")
            continue
        if tick.ts <= last_seen.get(symbol, -1):
            unchanged += 1
        else:
            ticks.append(tick)
    return PriceParse(ticks, unchanged, problems)


def _quote_tick(symbol: str, coin_id: str, quote: Any, recv_ts: int) -> ValidTick:
    if quote is None:
        raise InvalidTick("missing from the response")
    if not isinstance(quote, dict):
        raise InvalidTick(f"expected an object, got {type(quote).__name__}")
    updated = quote.get("last_updated_at")
    if isinstance(updated, bool) or not isinstance(updated, int | float):
        raise InvalidTick(f"no usable last_updated_at ({updated!r})")
    obj: dict[str, Any] = {
        "v": 1,
        "symbol": symbol,
        "quote": "USD",
        "price": quote.get("usd"),
        "qty": None,
        "ts": int(updated) * 1000,
        "source": SOURCE,
        "recv_ts": recv_ts,
    }
    extras = {
        "market_cap": quote.get("usd_market_cap"),
        "volume_24h": quote.get("usd_24h_vol"),
        "change_24h_pct": quote.get("usd_24h_change"),
    }
    obj.update({k: v for k, v in extras.items() if _finite(v) is not None})
    return ValidTick(validate_tick(obj)) if len(obj) > 8 else checked_tick(obj)


# --- requests ------------------------------------------------------------------------


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class _GiveUp(Exception):
    """This poll failed for good (not retried): reason in args[0]."""


def retry_after_s(value: str | None) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date), None when absent/bad."""
    if not value:
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _sleep(stop: StopFlag, seconds: float) -> None:
    stop.wait(seconds)  # a stop cuts a backoff short; the stop condition then gives up


class CoinGeckoSource:
    name = SOURCE

    def __init__(self, config: CoinGeckoConfig, client: httpx.Client | None = None) -> None:
        self.config = config
        self.counters = SourceCounters()
        self.base_url, headers = endpoint(config.api_key, config.key_type, config.api_url)
        self.budget = RequestBudget(config.budget)
        self._client = client or httpx.Client(headers=headers, follow_redirects=True)
        self._last_seen: dict[str, int] = {}
        self._not_before = 0.0  # monotonic: a Retry-After that outlived its poll

    def close(self) -> None:
        self._client.close()

    def batches(self, stop: StopFlag) -> Iterator[list[ValidTick]]:
        try:
            while not stop.is_set():
                started = time.monotonic()
                ticks = self.poll(stop)
                yield ticks
                stop.wait(max(0.0, self.config.interval_s - (time.monotonic() - started)))
        finally:
            self.close()

    def poll(self, stop: StopFlag) -> list[ValidTick]:
        """One poll: the new valid ticks (possibly none); failures are counted and logged."""
        deadline = time.monotonic() + self.config.poll_timeout_s
        try:
            body = self._fetch(stop, deadline)
        except _GiveUp as exc:
            self.counters.source_errors += 1
            note_problem(self.counters, str(exc.args[0]))
            return []
        except _Retryable as exc:
            self.counters.source_errors += 1
            note_problem(self.counters, f"CoinGecko poll given up: {exc.reason}")
            return []
        parsed = parse_simple_price(body, self.config.coin_ids, self._last_seen, now_ms())
        self.counters.unchanged += parsed.unchanged
        if parsed.unusable:
            self.counters.source_errors += 1
        else:
            self.counters.invalid += len(parsed.problems)
        for problem in parsed.problems:
            note_problem(self.counters, f"not produced: {problem}")
        for tick in parsed.ticks:
            self._last_seen[tick.symbol] = tick.ts
        return parsed.ticks

    def _fetch(self, stop: StopFlag, deadline: float) -> bytes:
        cfg = self.config
        backoff = wait_exponential_jitter(
            multiplier=cfg.backoff_initial_s, max=cfg.backoff_max_s, jitter=cfg.backoff_initial_s
        )

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, _Retryable) and exc.retry_after is not None:
                return exc.retry_after
            return float(backoff(state))

        def give_up(state: RetryCallState) -> bool:
            if state.attempt_number >= cfg.max_attempts or stop.is_set():
                return True
            return time.monotonic() + state.upcoming_sleep >= deadline

        def count_retry(state: RetryCallState) -> None:
            self.counters.retries += 1

        retrying = Retrying(
            retry=retry_if_exception_type(_Retryable),
            wait=wait,
            stop=give_up,
            sleep=lambda seconds: _sleep(stop, seconds),
            before_sleep=count_retry,
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                return self._request(stop, deadline)
        raise AssertionError("unreachable")  # pragma: no cover

    def _await_budget(self, stop: StopFlag, deadline: float) -> None:
        while True:
            now = time.monotonic()
            delay = max(self.budget.delay(), self._not_before - now)
            if delay <= 0:
                return
            if now + delay >= deadline:
                raise _GiveUp(
                    f"CoinGecko poll skipped: the request budget "
                    f"({self.budget.limit}/min) or a Retry-After leaves no time in this poll"
                )
            if stop.wait(min(delay, 0.5)):
                raise _GiveUp("stopped")

    def _request(self, stop: StopFlag, deadline: float) -> bytes:
        self._await_budget(stop, deadline)
        timeout = max(0.1, min(self.config.request_timeout_s, deadline - time.monotonic()))
        self.budget.record()
        started = time.perf_counter()
        try:
            response = self._client.get(
                f"{self.base_url}/simple/price",
                params=price_params(self.config.coin_ids),
                timeout=timeout,
            )
        except httpx.TimeoutException:
            raise _Retryable(f"no answer from {self.base_url} within {timeout:.1f}s") from None
        except httpx.TransportError as exc:
            raise _Retryable(f"cannot reach {self.base_url}: {exc}") from None
        finally:
            self.counters.requests.observe(time.perf_counter() - started)
        return self._check(response)

    def _check(self, response: httpx.Response) -> bytes:
        status = response.status_code
        if status == 200:
            return response.content
        reason = explain_error(status, response.content)
        if status in _HTTP_RETRYABLE:
            after = retry_after_s(response.headers.get("retry-after")) if status == 429 else None
            if after is not None:
                self._not_before = time.monotonic() + after
            raise _Retryable(reason, after)
        raise _GiveUp(reason)


@dataclass(frozen=True)
class Reachability:
    ok: bool
    detail: str


def coingecko_reachable(
    settings: Settings, *, key_type: str | None = None, timeout_s: float = 3.0
) -> Reachability:
    """One cheap ``/ping`` with a short timeout: can CoinGecko be used right now?

    For `cryptoctl run`, which falls back to the synthetic source when it cannot.
    """
    try:
        base, headers = endpoint(settings.coingecko_api_key, key_type, settings.coingecko_api_url)
    except UsageError as exc:
        return Reachability(False, exc.message)
    try:
        response = httpx.get(f"{base}/ping", headers=headers, timeout=timeout_s)
    except httpx.HTTPError as exc:
        return Reachability(False, f"cannot reach {base}: {exc.__class__.__name__}")
    if response.status_code != 200:
        return Reachability(False, explain_error(response.status_code, response.content))
    return Reachability(True, f"{base} answered")
