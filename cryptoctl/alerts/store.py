"""Alert rules in ``price_alerts``: validation of a new rule, add, list, remove; and the
fired events of ``alert_events`` (history, the newest few, failed deliveries).

The aggregator evaluates the rules (cryptoctl.alerts.engine); this module only writes them
and reads back what fired. Every query is parameterised.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cryptoctl.alerts.events import EVENT_COLUMNS, AlertEvent, condition_text, event_from_row
from cryptoctl.errors import UsageError
from cryptoctl.times import duration_text, iso_utc

if TYPE_CHECKING:
    import psycopg

    from cryptoctl.settings import Settings

CONDITIONS = ("above", "below", "change")
HTTP_SCHEMES = ("http", "https")
# Sources whose symbols are the coin list (cryptoctl.sources.coins) and need no stored data.
KNOWN_SOURCES = ("binance", "coinbase", "kraken", "coingecko", "synthetic", "replay")
# The quote a source's markets have unless told otherwise (`produce --quote`): a known coin
# in this quote is a known market without any data stored yet.
DEFAULT_QUOTES = {"binance": "USDT", "coinbase": "USD", "kraken": "USD", "coingecko": "USD",
                  "synthetic": "USD", "replay": "USD"}  # fmt: skip
_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*%?\s*$")


@dataclass(frozen=True, slots=True)
class NewRule:
    """A rule as validated from the command line, before it has an id."""

    symbol: str
    condition: str
    threshold: float
    window_ms: int | None = None
    source: str | None = None
    quote: str | None = None
    repeat: bool = False
    notify: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Rule:
    """A stored rule with what it did: how often it fired (events stored), and when last."""

    id: int
    symbol: str
    source: str | None
    quote: str | None
    condition: str
    threshold: float
    window_ms: int | None
    repeat: bool
    notify: tuple[str, ...]
    active: bool
    created_at_ms: int
    fired: int = 0
    last_fired_ms: int | None = None

    @property
    def market(self) -> str:
        """``binance BTC/USDT``; ``BTC (any market)`` without source and quote."""
        if self.source is None and self.quote is None:
            return f"{self.symbol} (any market)"
        return f"{self.source or 'any source'} {self.symbol}/{self.quote or 'any'}"

    @property
    def window(self) -> str | None:
        return duration_text(self.window_ms) if self.window_ms else None

    def describe(self) -> str:
        return condition_text(self.condition, self.threshold, self.window_ms) + (
            " (repeat)" if self.repeat else ""
        )

    @property
    def state(self) -> str:
        """``armed``, ``inactive`` or ``fired 1 time`` (a one-shot rule that fired), with
        the count for a repeating rule: ``armed, fired 3 times``; a one-shot rule of several
        markets fires once in each: ``armed, fired 2 markets``."""
        times = f"fired {self.fired} time" + ("" if self.fired == 1 else "s")
        if not self.active:
            return times if self.fired and not self.repeat else "inactive"
        if self.fired and not self.repeat:
            times = f"fired {self.fired} market" + ("" if self.fired == 1 else "s")
        return f"armed, {times}" if self.fired else "armed"


def rule_record(r: Rule) -> dict[str, Any]:
    return {
        "id": r.id,
        "symbol": r.symbol,
        "source": r.source,
        "quote": r.quote,
        "condition": r.condition,
        "threshold": r.threshold,
        "window": r.window,
        "repeat": r.repeat,
        "notify": list(r.notify),
        "active": r.active,
        "state": r.state,
        "fired": r.fired,
        "last_fired": iso_utc(r.last_fired_ms) if r.last_fired_ms is not None else None,
        "created_at": iso_utc(r.created_at_ms),
    }


RULE_FIELDS = tuple(rule_record(Rule(0, "", None, None, "above", 1.0, None, False, (), True, 0)))


# --- validation ------------------------------------------------------------------------


def parse_threshold(flag: str, text: str) -> float:
    """A price level > 0: ``100000``, ``0.00002``, ``1e5``."""
    try:
        value = float(text.replace("_", ""))
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise UsageError(
            f"{flag} {text!r}: the price must be a number greater than zero",
            hint=f"e.g. {flag} 100000",
        )
    return value


def parse_percent(text: str) -> float:
    """``5%``, ``5``, ``2.5%`` -> the percentage (> 0)."""
    match = _PERCENT.match(text)
    value = float(match.group(1)) if match else 0.0
    if not match or value <= 0:
        raise UsageError(f"--change {text!r}: use a percentage greater than zero", hint="e.g. --change 5%")
    return value


def parse_window(text: str | None) -> int:
    from cryptoctl.times import parse_duration_ms

    if text is None:
        raise UsageError(
            "--change needs --within: the window the change happens in", hint="e.g. --change 5% --within 10m"
        )
    try:
        ms = parse_duration_ms(text)
    except ValueError as exc:
        raise UsageError(f"--within: {exc}", hint="e.g. --within 10m") from None
    if ms <= 0:
        raise UsageError(f"--within {text!r}: the window must be longer than zero", hint="e.g. --within 10m")
    return ms


def check_notify_url(url: str) -> str:
    """An http(s) webhook, or a notification URL apprise knows (validated without sending)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url.strip())
    except ValueError:  # e.g. an unclosed IPv6 bracket
        parts = urlsplit("")
    if parts.scheme.lower() in HTTP_SCHEMES:
        if parts.netloc and _http_url_ok(url.strip()):
            return url.strip()
    elif parts.scheme:
        import apprise

        if apprise.Apprise().add(url.strip()):
            return url.strip()
    raise UsageError(
        f"--notify {url!r} is no webhook or notification URL",
        hint="use https://host/path (a webhook), or an apprise URL such as "
        "tgram://TOKEN/CHAT, ntfy://topic, json://host/path",
    )


def _http_url_ok(url: str) -> bool:
    """What the webhook client will accept: a host, a numeric port, an encodable name."""
    import httpx

    try:
        parsed = httpx.URL(url)
        _ = parsed.port  # a port that is not a number raises here
    except (httpx.InvalidURL, ValueError, UnicodeError):
        return False
    return bool(parsed.host)


def build_rule(
    symbol: str, *, above: str | None = None, below: str | None = None, change: str | None = None,
    within: str | None = None, source: str | None = None, quote: str | None = None,
    repeat: bool = False, notify: Sequence[str] = (),
) -> NewRule:  # fmt: skip
    """A rule from the flags of ``alerts add``, or a UsageError naming the good form."""
    given = [
        (name, v) for name, v in (("above", above), ("below", below), ("change", change)) if v is not None
    ]
    if len(given) != 1:
        raise UsageError(
            "give exactly one condition: --above PRICE, --below PRICE or --change P% --within W",
            hint="e.g. cryptoctl alerts add --symbol BTC --above 100000",
        )
    condition, text = given[0]
    window_ms: int | None = None
    if condition == "change":
        threshold = parse_percent(text)
        window_ms = parse_window(within)
    else:
        if within is not None:
            raise UsageError("--within goes with --change only", hint="e.g. --change 5% --within 10m")
        threshold = parse_threshold(f"--{condition}", text)
    return NewRule(
        symbol=symbol, condition=condition, threshold=threshold, window_ms=window_ms,
        source=source.lower() if source else None, quote=quote.upper() if quote else None,
        repeat=repeat,
        notify=tuple(check_notify_url(u) for u in notify),
    )  # fmt: skip


def _known_market(conn: psycopg.Connection[Any], rule: NewRule) -> bool:
    from cryptoctl.sources.coins import COINS

    if rule.symbol in COINS and (rule.source is None or rule.source in KNOWN_SOURCES):
        quotes = {DEFAULT_QUOTES[rule.source]} if rule.source else set(DEFAULT_QUOTES.values())
        if rule.quote is None or rule.quote in quotes:
            return True
    where = (
        "symbol = %(symbol)s AND (%(source)s::text IS NULL OR lower(source) = lower(%(source)s))"
        " AND (%(quote)s::text IS NULL OR quote = %(quote)s)"
    )
    row = conn.execute(
        f"SELECT EXISTS (SELECT 1 FROM price_aggregates_1m WHERE {where})"
        f" OR EXISTS (SELECT 1 FROM raw_price_data WHERE {where})",
        {"symbol": rule.symbol, "source": rule.source, "quote": rule.quote},
    ).fetchone()
    return bool(row and row[0])


class UnknownAlertMarket(UsageError):
    def __init__(self, rule: NewRule) -> None:
        which = (
            rule.symbol
            + (f" from {rule.source}" if rule.source else "")
            + (f" in {rule.quote}" if rule.quote else "")
        )
        super().__init__(
            f"no market {which}: no candle or tick of it is stored and it is not a known coin",
            hint="check --symbol/--source/--quote (e.g. --symbol BTC --source binance --quote USDT);"
            " `cryptoctl prices` lists the markets with data",
        )


class UnknownAlert(UsageError):
    def __init__(self, alert_id: int) -> None:
        super().__init__(f"no alert rule with id {alert_id}", hint="`cryptoctl alerts list` shows the ids")


# --- rules -----------------------------------------------------------------------------

_RULE_SELECT = """
SELECT r.id, r.symbol, r.source, r.quote, r.condition, r.threshold, r.window_ms, r.repeat,
       r.notify, r.active, (extract(epoch FROM r.created_at) * 1000)::bigint,
       coalesce(e.fired, 0), (extract(epoch FROM e.last_fired) * 1000)::bigint
FROM price_alerts r
LEFT JOIN (SELECT alert_id, count(*) AS fired, max(fired_at) AS last_fired
           FROM alert_events GROUP BY alert_id) e ON e.alert_id = r.id
"""


def _rule(row: Sequence[Any]) -> Rule:
    values = list(row)
    values[8] = tuple(values[8] or ())
    return Rule(*values)


def add_rule(settings: Settings, rule: NewRule) -> Rule:
    """Store a validated rule (its market must be known); the stored rule, with its id."""
    from cryptoctl.db.connection import session

    with session(settings, "adding an alert rule") as conn:
        if not _known_market(conn, rule):
            raise UnknownAlertMarket(rule)
        row = conn.execute(
            "INSERT INTO price_alerts (symbol, source, quote, condition, threshold, window_ms,"
            " repeat, notify) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (rule.symbol, rule.source, rule.quote, rule.condition, rule.threshold,
             rule.window_ms, rule.repeat, list(rule.notify)),
        ).fetchone()  # fmt: skip
        assert row is not None
        stored = conn.execute(_RULE_SELECT + " WHERE r.id = %s", (row[0],)).fetchone()
    assert stored is not None
    return _rule(stored)


def list_rules(settings: Settings) -> list[Rule]:
    from cryptoctl.db.connection import session

    with session(settings, "listing alert rules") as conn:
        return [_rule(r) for r in conn.execute(_RULE_SELECT + " ORDER BY r.id").fetchall()]


def remove_rule(settings: Settings, alert_id: int) -> Rule:
    """Delete a rule (its state goes with it; its fired events stay in the history)."""
    from cryptoctl.db.connection import session

    with session(settings, f"removing alert rule {alert_id}") as conn:
        row = conn.execute(_RULE_SELECT + " WHERE r.id = %s", (alert_id,)).fetchone()
        if row is None:
            raise UnknownAlert(alert_id)
        conn.execute("DELETE FROM price_alerts WHERE id = %s", (alert_id,))
    return _rule(row)


# --- fired events ----------------------------------------------------------------------


def history(
    settings: Settings, *, since_ms: int | None = None, symbols: Sequence[str] | None = None,
    limit: int | None = None,
) -> list[AlertEvent]:  # fmt: skip
    """Fired events, newest first."""
    from cryptoctl.db.connection import session

    with session(settings, "reading the alert history") as conn:
        rows = conn.execute(
            f"SELECT {EVENT_COLUMNS} FROM alert_events"
            " WHERE (%(since)s::bigint IS NULL OR fired_at >= to_timestamp(%(since)s / 1000.0))"
            " AND (%(symbols)s::text[] IS NULL OR symbol = ANY(%(symbols)s))"
            " ORDER BY fired_at DESC, id DESC LIMIT %(limit)s",
            {"since": since_ms, "symbols": list(symbols) if symbols else None, "limit": limit},
        ).fetchall()
    return [event_from_row(r) for r in rows]


def failed_deliveries(conn: psycopg.Connection[Any]) -> int:
    """Events whose delivery gave up (the retry budget ran out)."""
    row = conn.execute("SELECT count(*) FROM alert_events WHERE delivered = 'failed'").fetchone()
    return int(row[0]) if row else 0
