"""One small REST client for the exchanges' public endpoints (httpx + tenacity).

Every request of one exchange, whoever makes it (history, gap filling, ``verify``), goes
through that exchange's one :class:`ExchangeBudget` (:func:`shared_budget`):

- a sliding window of requests (Coinbase about 10/s, Kraken about 1/s);
- a server-side weight (Binance: ``X-MBX-USED-WEIGHT-1M``, 6,000 per calendar minute):
  the client counts what it sends, takes the header as the truth for the IP, and waits
  for the next minute before a request that would pass 90 % of the limit;
- a ``Retry-After`` on a 429 holds every caller until it has passed, then the request is
  retried.

A 418 (an IP ban) is never retried: :class:`~cryptoctl.errors.ExchangeBanned`. A 5xx, a
timeout or a connection error is retried with exponential backoff and jitter within
:class:`RetryPolicy`, then :class:`~cryptoctl.errors.ExchangeUnavailable` names the
exchange and the address. Constructors make no network call.

:class:`RestHistory` is what the exchanges' histories share (the client, the budget, the
clock, paging trades by id); each exchange's module fills in its hooks.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception_type

from cryptoctl.errors import ExchangeBanned, ExchangeReplyError, ExchangeUnavailable, UnknownMarket
from cryptoctl.exchanges.fields import NOT_JSON, loads, loads_exact
from cryptoctl.exchanges.trade import Market, Trade
from cryptoctl.metrics.histogram import Histogram, request_histogram
from cryptoctl.sources.coingecko import retry_after_s


class ExchangeCandle(NamedTuple):
    """One 1-minute candle as the exchange publishes it (for ``verify``)."""

    bucket_ms: int  # the minute's start, epoch ms
    open: float
    high: float
    low: float
    close: float
    volume: float  # base asset
    trades: int | None  # trade count (Coinbase publishes none)
    closed: bool  # False for the minute still forming
    # Volume-weighted average price where the exchange gives one (Binance: quote volume /
    # volume; Kraken: its vwap column), None otherwise or with no volume. It is known only
    # to within ``vwap_step``: the exchange rounds what it publishes to a few decimals.
    vwap: float | None = None
    vwap_step: float = 0.0


def decimal_step(text: object) -> float:
    """One unit in the last place of a decimal string: ``"30306.1"`` -> 0.1, ``"5"`` -> 1."""
    if not isinstance(text, str):
        return 0.0
    _, dot, decimals = text.strip().partition(".")
    return 10.0 ** -len(decimals) if dot else 1.0


@dataclass(frozen=True)
class RateLimit:
    """An exchange's public limits, as the client keeps under them."""

    requests: int | None = None  # at most this many requests in any window_s (sliding)
    window_s: float = 1.0
    weight_limit: int | None = None  # server-counted weight per calendar weight_window_s
    weight_header: str = ""  # the reply header carrying the IP's used weight
    weight_window_s: float = 60.0
    weight_headroom: float = 0.9  # wait for the next window beyond this share of the limit


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6  # per request, first try included (429s count)
    total_s: float = 180.0  # all attempts and backoffs of one request
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 20.0
    max_retry_after_s: float = 300.0  # a longer Retry-After is an error, not a hang
    timeout_s: float = 10.0


class ExchangeBudget:
    """The request budget of one exchange, shared by threads (a lock; waits happen inside
    it, so callers queue in order). ``clock`` is wall time: Binance's weight window is the
    calendar minute."""

    def __init__(
        self,
        limit: RateLimit,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.limit = limit
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._sent: deque[float] = deque()
        self._not_before = 0.0
        self._window = -1  # index of the current weight window
        self._used = 0
        self.waited_s = 0.0  # total time callers were held (for reports and tests)

    def acquire(self, weight: int = 1) -> None:
        """Block until one request of this weight may be sent, and count it."""
        with self._lock:
            while (delay := self._delay(weight)) > 0:
                self.waited_s += delay
                self._sleep(delay)
            now = self._clock()
            self._sent.append(now)
            self._roll(now)
            self._used += weight

    def observe_weight(self, used: int) -> None:
        """The server's count of the IP's weight in the current window (other processes
        included); our own count may be ahead of it (requests in flight)."""
        with self._lock:
            self._roll(self._clock())
            self._used = max(self._used, used)

    def hold_off(self, seconds: float) -> None:
        """No request from anyone for this long (a 429's Retry-After)."""
        with self._lock:
            self._not_before = max(self._not_before, self._clock() + seconds)

    def _delay(self, weight: int) -> float:
        now = self._clock()
        delays = [self._not_before - now]
        lim = self.limit
        if lim.requests is not None:
            while self._sent and self._sent[0] <= now - lim.window_s:
                self._sent.popleft()
            if len(self._sent) >= lim.requests:
                delays.append(self._sent[0] + lim.window_s - now)
        if lim.weight_limit is not None:
            self._roll(now)
            if self._used > 0 and self._used + weight > lim.weight_limit * lim.weight_headroom:
                next_window = (self._window + 1) * lim.weight_window_s
                # a little past the boundary: the server's clock is not ours
                delays.append(next_window - now + lim.weight_window_s * 0.01)
        return max(delays)

    def _roll(self, now: float) -> None:
        if self.limit.weight_limit is None:
            return
        window = int(now // self.limit.weight_window_s)
        if window != self._window:
            self._window = window
            self._used = 0


_BUDGETS: dict[str, ExchangeBudget] = {}
_BUDGETS_LOCK = threading.Lock()


def shared_budget(exchange: str, limit: RateLimit) -> ExchangeBudget:
    """The process-wide budget of an exchange (created on first use)."""
    with _BUDGETS_LOCK:
        if exchange not in _BUDGETS:
            _BUDGETS[exchange] = ExchangeBudget(limit)
        return _BUDGETS[exchange]


class _Retry(Exception):
    def __init__(self, reason: str, *, held: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.held = held  # the budget already holds callers for a Retry-After


# A reply whose body says "busy / rate limited, try again" despite HTTP 200 (Kraken's
# ``EAPI:Rate limit exceeded``): the reason, or None when the body is fine.
BodyCheck = Callable[[httpx.Response], str | None]


@dataclass
class RestClient:
    """GETs against one exchange's base URL within its budget and retry policy."""

    exchange: str
    base_url: str
    budget: ExchangeBudget
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    http: httpx.Client | None = None
    body_retry: BodyCheck | None = None
    floats_as_text: bool = False  # read non-integer JSON numbers as their text (Kraken)
    attempts: int = 0  # requests sent, retries included
    latency: Histogram = field(default_factory=request_histogram)  # seconds per request sent

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")
        self.host = httpx.URL(self.base_url).netloc.decode() or self.base_url

    def _client(self) -> httpx.Client:
        if self.http is None:
            self.http = httpx.Client(
                headers={"accept": "application/json", "user-agent": "cryptoctl"},
                follow_redirects=True,
            )
        return self.http

    def close(self) -> None:
        if self.http is not None:
            self.http.close()

    def get(
        self, path: str, params: Mapping[str, Any] | None = None, *, weight: int = 1
    ) -> httpx.Response:
        """A reply that is 2xx or a 4xx other than 418/429 (the caller reads those: an
        unknown symbol is a 400 on Binance, a 404 on Coinbase)."""
        policy = self.retry

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, _Retry) and exc.held:
                return 0.0  # the budget holds everyone until the Retry-After has passed
            backoff = min(policy.backoff_max_s, policy.backoff_initial_s * 2 ** (state.attempt_number - 1))
            return backoff + random.uniform(0, policy.backoff_initial_s)

        def give_up(state: RetryCallState) -> bool:
            if state.attempt_number >= policy.max_attempts:
                return True
            return (state.seconds_since_start or 0.0) + (state.upcoming_sleep or 0.0) > policy.total_s

        retrying = Retrying(
            retry=retry_if_exception_type(_Retry), wait=wait, stop=give_up, reraise=True
        )
        started = time.monotonic()
        try:
            for attempt in retrying:
                with attempt:
                    return self._once(path, params, weight)
        except _Retry as exc:
            tries = attempt.retry_state.attempt_number
            raise ExchangeUnavailable(
                self.exchange,
                self.host,
                f"{exc.reason} ({tries} attempts in {time.monotonic() - started:.0f} s)",
            ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def get_json(self, path: str, params: Mapping[str, Any] | None = None, *, weight: int = 1) -> Any:
        """The JSON body of a 2xx reply; any other reply is an ExchangeReplyError."""
        response = self.get(path, params, weight=weight)
        if response.status_code >= 300:
            raise self.reply_error(response, path)
        return self.json_of(response, path)

    def json_of(self, response: httpx.Response, path: str) -> Any:
        body = (loads_exact if self.floats_as_text else loads)(response.content)
        if body is NOT_JSON:
            raise ExchangeReplyError(self.exchange, self.host, f"{path} sent a body that is not JSON")
        return body

    def bad(self, detail: str) -> ExchangeReplyError:
        """The error for a reply not in the documented shape."""
        return ExchangeReplyError(self.exchange, self.host, detail)

    def rows(self, path: str, body: Any) -> list[Any]:
        """A body that must be a JSON array."""
        if not isinstance(body, list):
            raise self.bad(f"{path} sent {type(body).__name__}, not a list")
        return body

    def reply_error(self, response: httpx.Response, path: str) -> ExchangeReplyError:
        text = response.text.strip().replace("\n", " ")[:200]
        return ExchangeReplyError(
            self.exchange, self.host, f"{path} answered HTTP {response.status_code}: {text}"
        )

    def _once(self, path: str, params: Mapping[str, Any] | None, weight: int) -> httpx.Response:
        self.budget.acquire(weight)
        self.attempts += 1
        url = f"{self.base_url}{path}"
        started = time.perf_counter()
        try:
            response = self._client().get(url, params=params, timeout=self.retry.timeout_s)
        except httpx.TimeoutException:
            raise _Retry(f"no answer within {self.retry.timeout_s:.0f} s") from None
        except httpx.TransportError as exc:
            raise _Retry(f"cannot connect: {exc.__class__.__name__} {exc}") from None
        finally:
            self.latency.observe(time.perf_counter() - started)
        self._note_weight(response)
        status = response.status_code
        after = retry_after_s(response.headers.get("retry-after"))
        if status == 418:
            raise ExchangeBanned(self.exchange, self.host, after)
        if status == 429:
            if after is None:
                raise _Retry("HTTP 429 (rate limited, no Retry-After)")
            if after > self.retry.max_retry_after_s:
                raise ExchangeUnavailable(
                    self.exchange, self.host, f"HTTP 429 with Retry-After {after:.0f} s",
                    hint="rate limited for longer than cryptoctl waits; try again later",
                )
            self.budget.hold_off(after)
            raise _Retry(f"HTTP 429 (rate limited, Retry-After {after:g} s)", held=True)
        if status >= 500:
            raise _Retry(f"HTTP {status}")
        if status < 300 and self.body_retry is not None:
            reason = self.body_retry(response)
            if reason is not None:
                raise _Retry(reason)
        return response

    def _note_weight(self, response: httpx.Response) -> None:
        header = self.budget.limit.weight_header
        value = response.headers.get(header) if header else None
        if value is not None and value.strip().isdigit():
            self.budget.observe_weight(int(value))


class RestHistory:
    """The base of an exchange's REST history (a TradeHistory and a CandleHistory).

    It holds the :class:`RestClient` within the exchange's shared budget and the clock, and
    pages trades by id: :meth:`trades_after` and :meth:`trades_since` are built on the
    hooks :meth:`first_id_at` and :meth:`after_id`. An exchange that pages by time
    (Kraken) overrides the two instead. Each subclass names ``name``, ``limit`` and
    ``default_rest_url`` and has its own ``check_market`` and ``candles``.
    """

    name: ClassVar[str]
    limit: ClassVar[RateLimit]
    default_rest_url: ClassVar[str]
    floats_as_text: ClassVar[bool] = False  # read non-integer JSON numbers as their text

    def __init__(
        self,
        base_url: str | None = None,
        *,
        budget: ExchangeBudget | None = None,
        retry: RetryPolicy | None = None,
        http: httpx.Client | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.rest = RestClient(
            self.name, base_url or self.default_rest_url, budget or shared_budget(self.name, self.limit),
            retry or RetryPolicy(), http, body_retry=self.retry_body, floats_as_text=self.floats_as_text,
        )  # fmt: skip
        self._clock = clock

    def close(self) -> None:
        self.rest.close()

    def now_ms(self) -> int:
        return int(self._clock() * 1000)

    def retry_body(self, response: httpx.Response) -> str | None:
        """Hook: why a 2xx reply is to be retried (a "busy" body), or None: it is not."""
        return None

    def unknown_market(self, market: Market, tried: str) -> UnknownMarket:
        return UnknownMarket(self.name, f"{market.symbol}/{market.quote}", tried)

    def trades_after(
        self, market: Market, after: Trade, *, until_id: int | None = None
    ) -> Iterator[list[Trade]]:
        return self.after_id(market, after.trade_id, until_id)

    def trades_since(self, market: Market, ts_ms: int) -> Iterator[list[Trade]]:
        first = self.first_id_at(market, ts_ms)
        if first is None:
            return iter(())
        return self.after_id(market, first - 1, None)

    def after_id(self, market: Market, last_id: int, until_id: int | None) -> Iterator[list[Trade]]:
        """Hook: the pages of trades with last_id < id (<= until_id)."""
        raise NotImplementedError

    def first_id_at(self, market: Market, ts_ms: int) -> int | None:
        """Hook: the id of the first trade at or after ts_ms, None when there is none yet."""
        raise NotImplementedError

    def read_trades(self, path: str, rows: Iterable[Any], parse: Callable[[Any], Trade | str]) -> list[Trade]:
        """The rows as trades, ascending; ``parse`` says what is wrong with a row it cannot
        read, and such a row stops the history (skipped, it would be a silent hole)."""
        trades = []
        for row in rows:
            trade = parse(row)
            if isinstance(trade, str):
                raise self.rest.bad(f"{path} row: {trade}: {row!r}")
            trades.append(trade)
        return sorted(trades)


def page_after(
    trades: Iterable[Trade], last_id: int, until_id: int | None, min_ts: int | None = None
) -> list[Trade]:
    """What a page of trades (ascending) adds after trade ``last_id``: those with
    last_id < id <= until_id (and time >= min_ts); what came before (a page overlapping
    the last one) is dropped."""
    return [
        t
        for t in trades
        if t.trade_id > last_id
        and (until_id is None or t.trade_id <= until_id)
        and (min_ts is None or t.ts >= min_ts)
    ]
