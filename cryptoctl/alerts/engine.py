"""Alert rules in the aggregator: the active rules, kept current by a thread of its own,
and what one partition's flush carries of them (fired events, changed rule states).

The thread LISTENs on ``cryptoctl_alert_rules`` (price_alerts' trigger) on its own
connection and reloads at each notification, and every ``POLL_S`` anyway; the loop reads
the current rules (a dict, swapped whole) once per batch, so it never waits for it. The
events and states are written by cryptoctl/db/sink.py in the flush transaction.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cryptoctl.alerts.rules import Fired, Rule, StoredStates
from cryptoctl.settings import Settings

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

POLL_S = 2.0
CHANNEL = "cryptoctl_alert_rules"

_RULES = """
SELECT id, symbol, condition, threshold, source, quote, window_ms, repeat, notify
  FROM price_alerts WHERE active ORDER BY id
"""
# The stored state of the active rules, at a claim (markets of other partitions included:
# their ticks never come to this partition, so they are never used or written).
STATES_SQL = """
SELECT s.alert_id, s.source, s.quote, s.armed, s.fired, s.window_state, p.symbol,
       p.window_ms
  FROM alert_state s JOIN price_alerts p ON p.id = s.alert_id
 WHERE p.active
"""

RulesBySymbol = dict[str, list[Rule]]
MarketKey = tuple[str, str, str]  # (symbol, source, quote)
# A rule state as written: (rule id, source, symbol, quote, armed, fired, window_state)
StateRow = tuple[int, str, str, str, bool, int, Any]


def rule_from_row(row: tuple[Any, ...]) -> Rule:
    rid, symbol, condition, threshold, source, quote, window_ms, repeat, notify = row
    return Rule(int(rid), symbol, condition, float(threshold), source, quote,
                None if window_ms is None else int(window_ms), bool(repeat),
                tuple(notify or ()))


def by_symbol(rules: list[Rule]) -> RulesBySymbol:
    out: RulesBySymbol = {}
    for rule in rules:
        out.setdefault(rule.symbol, []).append(rule)
    return out


def stored_states(rows: list[tuple[Any, ...]]) -> tuple[StoredStates, dict[MarketKey, int]]:
    """The stored states, and the markets whose change windows were stored without their
    ticks, with the widest such window (their ticks come from the raw ticks)."""
    states: StoredStates = {}
    windows: dict[MarketKey, int] = {}
    for rid, source, quote, armed, fired, window_state, symbol, window_ms in rows:
        states[(int(rid), source, quote)] = (bool(armed), int(fired), window_state)
        if window_ms is not None and window_state is not None and "t" not in window_state:
            market = (symbol, source, quote)
            windows[market] = max(windows.get(market, 0), int(window_ms))
    return states, windows


@dataclass
class AlertFlush:
    """What one partition's flush writes for alerts: the events fired by its ticks (with
    the offset of the tick) and the rule states those ticks changed."""

    events: list[tuple[Fired, int]] = field(default_factory=list)
    states: list[StateRow] = field(default_factory=list)
    inserted: int = 0  # events the commit wrote (set by the sink)

    def __bool__(self) -> bool:
        return bool(self.events or self.states)


class RuleWatcher:
    """The active rules by symbol (``current``), reloaded on NOTIFY and every POLL_S."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.current: RulesBySymbol = {}
        self.version = 0  # bumped at each change of the rule set
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: psycopg.Connection[Any] | None = None

    def start(self) -> None:
        """Load the rules now (the first batch sees them), then keep them current."""
        self._load(self._connect())
        self._thread = threading.Thread(target=self._run, name="alert-rules", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(POLL_S + 3)
        self._drop()

    def _connect(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            from cryptoctl.db.connection import connect

            self._conn = connect(self.settings, autocommit=True)
            self._conn.execute(f"LISTEN {CHANNEL}")
        return self._conn

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
        self._conn = None

    def _load(self, conn: psycopg.Connection[Any]) -> None:
        rules = by_symbol([rule_from_row(r) for r in conn.execute(_RULES).fetchall()])
        if rules != self.current:
            self.current = rules  # swapped whole: the loop reads it without a lock
            self.version += 1
            log.info("alert rules: %d active", sum(len(v) for v in rules.values()))

    def _run(self) -> None:
        failing = False
        while not self._stop.is_set():
            try:
                conn = self._connect()
                for _ in conn.notifies(timeout=POLL_S, stop_after=1):
                    pass
                if not self._stop.is_set():
                    self._load(conn)
                failing = False
            except Exception as exc:  # PostgreSQL away: keep the rules we have, retry
                if not failing:
                    log.warning("alert rules: reloading failed (%s); retrying", exc)
                failing = True
                self._drop()
                self._stop.wait(POLL_S)
