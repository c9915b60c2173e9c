"""The outbox worker: fired alerts from ``alert_events`` to the Redis channel and to each
rule's notify targets, after the aggregator committed them.

One event at a time, locked with ``FOR UPDATE SKIP LOCKED``, so several workers (one per
``aggregate`` process) share the outbox and never deliver an event twice: the row stays
locked while its targets are tried, and what succeeded is written before the lock goes.
Per event: published once on ``<redis prefix>alerts`` (``published``), then every target
not yet in ``delivered_targets`` is tried once: http(s) URLs get one JSON object by POST
with ``Idempotency-Key: <event id>`` (httpx), other schemes go through apprise. A failed
target is tried again after a backoff (doubling, capped, with jitter: ``next_attempt_at``);
after ``alert_attempts`` tries of its targets the event is ``failed`` and ``last_error``
says why (publishing to Redis is retried without a budget). An event without targets
is ``delivered`` once published.

The worker wakes on ``LISTEN cryptoctl_alert_events`` and polls every ``poll_s`` anyway
(retries come due without a notification). It runs in a daemon thread beside the
aggregator, never in its loop: a service down here is retried, never raised.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from cryptoctl.alerts.events import EVENT_COLUMNS, AlertEvent, event_from_row, event_json
from cryptoctl.settings import Settings

if TYPE_CHECKING:
    import httpx
    import psycopg

CHANNEL = "cryptoctl_alert_events"
POLL_S = 2.0
HTTP_TIMEOUT_S = 5.0
MAX_BACKOFF_MS = 300_000  # one wait between tries is at most 5 minutes
RECENT = 8  # events kept for the dashboard
PER_PASS = 500  # events one pass tries at most (the next pass goes on at once)

_DUE = (
    f"SELECT {EVENT_COLUMNS}, published, notify, delivered_targets FROM alert_events"
    " WHERE (delivered = 'pending' OR NOT published)"
    " AND next_attempt_at <= now() AND id <> ALL(%s)"
    " ORDER BY next_attempt_at, id LIMIT 1 FOR UPDATE SKIP LOCKED"
)


def alerts_channel(settings: Settings) -> str:
    """The Redis pub/sub channel of fired alerts (one JSON event per message)."""
    return f"{settings.redis_prefix}alerts"


def backoff_ms(attempts: int, base_ms: int, rng: Callable[[], float] = random.random) -> int:
    """The wait after the ``attempts``-th failed try: base·2^(n-1), at most 5 minutes,
    then jittered to between half and all of it (so workers retrying together spread)."""
    full = min(base_ms * 2 ** min(max(attempts - 1, 0), 30), MAX_BACKOFF_MS)
    return round(full * (0.5 + rng() / 2))


def target_name(url: str) -> str:
    """A target as errors name it: scheme and host only (apprise URLs carry tokens)."""
    try:
        parts = urlsplit(url)
        if parts.scheme.lower() in ("http", "https"):
            port = f":{parts.port}" if parts.port else ""
            return f"{parts.scheme}://{parts.hostname or ''}{port}"
        return f"{parts.scheme}://…"
    except ValueError:  # a port that is no number, a broken IPv6 address
        return "a malformed URL"


@dataclass(frozen=True)
class DeliveryStats:
    published: int = 0  # events sent on the Redis channel
    delivered: int = 0  # events every target took
    failed: int = 0  # events whose retry budget ran out
    retries: int = 0  # failed tries that were scheduled again
    last_error: str | None = None


@dataclass
class _Outcome:
    published: bool
    done: list[str] = field(default_factory=list)  # targets that took it now
    errors: list[str] = field(default_factory=list)


class DeliveryWorker:
    """Delivers due outbox rows; :meth:`run` until ``stop`` is set, or :meth:`deliver_due`
    once (tests). Thread-safe reads: :meth:`stats`, :meth:`recent`."""

    def __init__(
        self, settings: Settings, *, poll_s: float = POLL_S, http_timeout_s: float = HTTP_TIMEOUT_S,
        rng: Callable[[], float] = random.random,
    ) -> None:  # fmt: skip
        self.settings = settings
        self.poll_s = poll_s
        self.http_timeout_s = http_timeout_s
        self._rng = rng
        self._lock = threading.Lock()
        self._stats = DeliveryStats()
        self._recent: deque[AlertEvent] = deque(maxlen=RECENT)
        self._http: httpx.Client | None = None
        self._redis: Any = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # --- reading -------------------------------------------------------------------

    def stats(self) -> DeliveryStats:
        with self._lock:
            return self._stats

    def recent(self) -> list[AlertEvent]:
        """The events this worker published, newest first."""
        with self._lock:
            return list(reversed(self._recent))

    def _count(self, last_error: str | None = None, **added: int) -> None:
        with self._lock:
            s = self._stats
            counts = {k: getattr(s, k) + n for k, n in added.items()}
            self._stats = replace(s, **counts, last_error=last_error or s.last_error)

    # --- running -------------------------------------------------------------------

    def start(self) -> DeliveryWorker:
        """Run in a daemon thread (stopped by :meth:`stop`, or with the process)."""
        self._thread = threading.Thread(
            target=self.run, args=(self._stop,), name="alert-delivery", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self, stop: threading.Event) -> None:
        """Deliver what is due whenever an event is inserted, and every ``poll_s``; any
        failure (PostgreSQL or Redis down) is kept in the stats and tried again later."""
        listener: psycopg.Connection[Any] | None = None
        try:
            while not stop.is_set():
                try:
                    listener = listener or self._listen()
                    if self.deliver_due() < PER_PASS:
                        self._wait(listener, stop)
                except Exception as exc:  # never let delivery take the process down
                    self._count(last_error=f"{type(exc).__name__}: {exc}")
                    _close(listener)
                    listener = None
                    stop.wait(self.poll_s)
        finally:
            _close(listener)
            self._close_clients()

    def _listen(self) -> psycopg.Connection[Any]:
        from cryptoctl.db.connection import connect

        conn = connect(self.settings, autocommit=True)
        conn.execute(f"LISTEN {CHANNEL}")
        return conn

    def _wait(self, listener: psycopg.Connection[Any], stop: threading.Event) -> None:
        """Until a notification for this schema, ``poll_s``, or ``stop``."""
        deadline = time.monotonic() + self.poll_s
        while not stop.is_set() and (left := deadline - time.monotonic()) > 0:
            for note in listener.notifies(timeout=min(left, 0.25), stop_after=1):
                if note.payload == self.settings.db_schema:
                    return

    def _close_clients(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None
        if self._redis is not None:
            self._redis.close()
            self._redis = None

    # --- one pass ------------------------------------------------------------------

    def deliver_due(self) -> int:
        """Try each event due now once, up to PER_PASS (one transaction each); how many were
        tried. An event a try left due again (a short backoff) waits for the next pass."""
        from cryptoctl.db.connection import connect

        tried: list[int] = []
        with connect(self.settings) as conn:
            while len(tried) < PER_PASS:
                with conn.transaction():
                    row = conn.execute(_DUE, (tried,)).fetchone()
                    if row is None:
                        return len(tried)
                    self._deliver(conn, row)
                tried.append(int(row[0]))
        return len(tried)

    def _deliver(self, conn: psycopg.Connection[Any], row: Sequence[Any]) -> None:
        event = event_from_row(row[:-3])
        published, notify, done = bool(row[-3]), list(row[-2] or ()), list(row[-1] or ())
        outcome = _Outcome(published)
        if not published:
            outcome.published = self._publish(event, outcome.errors)
        for url in notify:
            if url in done or event.delivered == "failed":  # failed: only published now
                continue
            error = self._send(url, event)
            if error is None:
                outcome.done.append(url)
            else:
                outcome.errors.append(f"{target_name(url)}: {error}")
        self._record(conn, event, outcome, notify, done)

    def _record(
        self, conn: psycopg.Connection[Any], event: AlertEvent, outcome: _Outcome,
        notify: list[str], done: list[str],
    ) -> None:  # fmt: skip
        targets = done + outcome.done
        taken = set(notify) <= set(targets)
        complete = outcome.published and taken
        attempts = event.attempts + 1
        # The retry budget is the notify targets': a Redis outage alone never makes an
        # event failed (it is published once Redis is back, however long that takes).
        if event.delivered == "failed":
            status = "failed"
        elif complete:
            status = "delivered"
        elif not taken and attempts >= self.settings.alert_attempts:
            status = "failed"
        else:
            status = "pending"
        wait_ms = 0 if complete else backoff_ms(attempts, self.settings.alert_backoff_ms, self._rng)
        conn.execute(
            "UPDATE alert_events SET published = %s, delivered_targets = %s, attempts = %s,"
            " delivered = %s, last_error = coalesce(%s, last_error),"
            " next_attempt_at = now() + %s * interval '1 millisecond',"
            " delivered_at = CASE WHEN %s THEN now() END WHERE id = %s",
            (outcome.published, targets, attempts, status, "; ".join(outcome.errors) or None,
             wait_ms, complete, event.id),
        )  # fmt: skip
        self._count(
            outcome.errors[-1] if outcome.errors else None, delivered=int(complete),
            failed=int(status == "failed" and event.delivered != "failed"),
            retries=int(status == "pending"),
        )  # fmt: skip

    # --- the channels --------------------------------------------------------------

    def _publish(self, event: AlertEvent, errors: list[str]) -> bool:
        from cryptoctl.cache.client import redis_client

        try:
            if self._redis is None:
                self._redis = redis_client(self.settings)
            self._redis.publish(alerts_channel(self.settings), event_json(event))
        except Exception as exc:
            errors.append(f"Redis: {type(exc).__name__}: {exc}")
            self._redis = None
            return False
        with self._lock:
            self._recent.append(event)
        self._count(published=1)
        return True

    def _send(self, url: str, event: AlertEvent) -> str | None:
        """None when the target took the event, else why not. Whatever goes wrong with one
        target is that target's failure (retried, then `failed`), never an exception: one
        would roll back the event's bookkeeping and keep it first in line, for ever."""
        try:
            if urlsplit(url).scheme.lower() in ("http", "https"):
                return self._post(url, event)
            return _apprise(url, event)
        except Exception as exc:  # the URL is not named: it may carry a token
            return f"{type(exc).__name__}"

    def _post(self, url: str, event: AlertEvent) -> str | None:
        import httpx

        if self._http is None:
            self._http = httpx.Client(timeout=self.http_timeout_s, follow_redirects=False)
        try:
            reply = self._http.post(
                url, content=event_json(event).encode(),
                headers={"Content-Type": "application/json", "Idempotency-Key": str(event.id)},
            )  # fmt: skip
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}"
        if 200 <= reply.status_code < 300:
            return None
        return f"HTTP {reply.status_code}"


def _apprise(url: str, event: AlertEvent) -> str | None:
    import apprise

    notifier = apprise.Apprise()
    if not notifier.add(url):
        return "not a URL apprise knows"
    title = f"cryptoctl alert: {event.symbol} {event.describe()}"
    body = (
        f"{event.market} at {event.price:g} ({event.describe()}), alert #{event.alert_id}, event {event.id}"
    )
    return None if notifier.notify(title=title, body=body) else "apprise could not notify"


def _close(conn: psycopg.Connection[Any] | None) -> None:
    """Close a connection that may be broken already (its errors say nothing new)."""
    if conn is not None:
        with contextlib.suppress(Exception):
            conn.close()
