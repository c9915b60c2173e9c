"""`cryptoctl alerts add|list|rm|history|watch`: price alert rules and what they fired."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING

import typer

from cryptoctl.cli.context import CliState, state
from cryptoctl.cli.options import (
    FILTER_SYMBOLS_HELP,
    OutputFormat,
    WatchFormat,
    format_option,
    market_source_option,
    quote_option,
    stop_after_option,
    symbols_option,
)
from cryptoctl.cli.query import emit, output_format_option, parse_time
from cryptoctl.errors import UsageError

if TYPE_CHECKING:
    from cryptoctl.alerts.events import AlertEvent

alerts_app = typer.Typer(
    help="Price alerts: rules the aggregator fires exactly once, and where they go.",
    no_args_is_help=True,
)


def _one_symbol(symbols: Sequence[str] | None) -> str:
    if not symbols or len(symbols) != 1:
        raise UsageError(
            "an alert rule watches one symbol: give --symbol once",
            hint="e.g. cryptoctl alerts add --symbol BTC --above 100000",
        )
    return symbols[0]


@alerts_app.command("add")
def add(
    ctx: typer.Context,
    symbols: list[str] | None = symbols_option(None, "The symbol to watch, e.g. BTC."),
    above: str | None = typer.Option(
        None, "--above", metavar="PRICE", help="Fire at the first tick at or above PRICE."
    ),
    below: str | None = typer.Option(
        None, "--below", metavar="PRICE", help="Fire at the first tick at or below PRICE."
    ),
    change: str | None = typer.Option(
        None,
        "--change",
        metavar="P%",
        help="Fire when the price moved P% up from the low or down from the high of --within.",
    ),
    within: str | None = typer.Option(
        None, "--within", metavar="DURATION", help="The window of --change, e.g. 10m."
    ),
    source: str | None = market_source_option(),
    quote: str | None = quote_option(),
    repeat: bool = typer.Option(
        False, "--repeat", help="Fire again each time, once the condition was false in between."
    ),
    notify: list[str] | None = typer.Option(
        None,
        "--notify",
        metavar="URL",
        help="Deliver to this webhook (https://...) or apprise URL (tgram://, ntfy://, ...); repeatable.",
    ),
    fmt: OutputFormat = output_format_option(),
) -> None:
    """Add a rule: `--above X`, `--below X` or `--change P% --within W` on one symbol.

    Without `--source`/`--quote` the rule watches every market of the symbol, each firing on
    its own. One-shot unless `--repeat`. The rule applies to ticks the aggregator processes
    after it picked the rule up (within a few seconds).
    """
    from cryptoctl.alerts.store import RULE_FIELDS, add_rule, build_rule, rule_record

    rule = build_rule(
        _one_symbol(symbols), above=above, below=below, change=change, within=within,
        source=source, quote=quote, repeat=repeat, notify=notify or (),
    )  # fmt: skip
    st = state(ctx)
    stored = add_rule(st.settings(), rule)
    if fmt is OutputFormat.table:
        st.err.print(f"[green]✓[/] alert {stored.id}: {stored.market} {stored.describe()}")
        return
    if fmt is OutputFormat.json:  # one object, so that `| jq .id` is the new rule's id
        st.out.file.write(json.dumps(rule_record(stored), indent=2, ensure_ascii=False) + "\n")
        return
    emit(fmt, [stored], record=rule_record, fields=RULE_FIELDS, table=lambda rows: None, ctx=ctx)


@alerts_app.command("list")
def list_(ctx: typer.Context, fmt: OutputFormat = output_format_option()) -> None:
    """The rules: id, market, condition, state (armed, inactive, fired n times), last fired."""
    from cryptoctl.alerts.store import RULE_FIELDS, list_rules, rule_record
    from cryptoctl.render.alerts import rules_table

    st = state(ctx)
    rules = list_rules(st.settings())
    if not rules:
        st.err.print("no alert rules [dim](add one: cryptoctl alerts add --symbol BTC --above 100000)[/]")
        if fmt is OutputFormat.table:
            return
    table = partial(rules_table, width=st.out.width)
    emit(fmt, rules, record=rule_record, fields=RULE_FIELDS, table=table, ctx=ctx)


@alerts_app.command("rm")
def rm(
    ctx: typer.Context,
    alert_id: int = typer.Argument(..., metavar="ID", help="The rule's id (see `alerts list`)."),
) -> None:
    """Remove a rule. Its fired events stay in `alerts history`."""
    from cryptoctl.alerts.store import remove_rule

    st = state(ctx)
    removed = remove_rule(st.settings(), alert_id)
    st.err.print(f"[green]✓[/] removed alert {removed.id}: {removed.market} {removed.describe()}")


@alerts_app.command("history")
def history(
    ctx: typer.Context,
    since: str | None = typer.Option(
        None, "--since", help="Only events fired since: a duration back (1d) or ISO-8601 UTC."
    ),
    symbols: list[str] | None = symbols_option(None, FILTER_SYMBOLS_HELP),
    limit: int = typer.Option(100, "--limit", min=1, help="At most this many events, newest first."),
    fmt: OutputFormat = output_format_option(),
) -> None:
    """Fired alerts, newest first: market, condition, the price and event time of the tick
    that fired it, and whether delivery succeeded (pending, delivered, failed)."""
    from cryptoctl.alerts import store
    from cryptoctl.alerts.events import EVENT_FIELDS, event_record
    from cryptoctl.render.alerts import history_table

    st = state(ctx)
    since_ms = parse_time("--since", since, int(time.time() * 1000)) if since else None
    events = store.history(st.settings(), since_ms=since_ms, symbols=symbols, limit=limit)
    if not events:
        st.err.print("no alerts fired" + (f" since {since}" if since else ""))
        if fmt is OutputFormat.table:
            return
    table = partial(history_table, width=st.out.width)
    emit(fmt, events, record=event_record, fields=EVENT_FIELDS, table=table, ctx=ctx)


@alerts_app.command("watch")
def watch(
    ctx: typer.Context,
    last: int = typer.Option(5, "--last", min=0, help="First show this many stored events (0: none)."),
    fmt: WatchFormat = format_option(
        WatchFormat.table, "A line per event, or jsonl: one JSON object per line."
    ),
    duration: int | None = stop_after_option(),
) -> None:
    """Alerts as they fire, one line each (a terminal bell on a TTY): the last few stored
    events first, then the Redis channel live. Ctrl-C stops."""
    import threading

    from cryptoctl.alerts import store
    from cryptoctl.alerts.watch import follow_events
    from cryptoctl.cli.signals import stop_on_signals

    st = state(ctx)
    settings = st.settings()
    stop = threading.Event()
    show = _EventPrinter(st, fmt, bell=st.stdout_is_tty and fmt is WatchFormat.table)
    # Subscribed before the stored events are read: an event fired in between is not lost
    # (and not shown twice: the printer knows the ids it showed).
    events = follow_events(settings, stop, duration_s=duration / 1000 if duration else None)
    for event in reversed(store.history(settings, limit=last) if last else []):
        show(event, live=False)
    st.err.print("[dim]watching for alerts (Ctrl-C stops)…[/]")
    with stop_on_signals(stop):
        for event in events:
            show(event, live=True)
    count = show.live
    st.err.print(f"[dim]{count} alert{'' if count == 1 else 's'} while watching[/]")


class _EventPrinter:
    """A line (or a JSON object) per event to stdout, each event once."""

    def __init__(self, st: CliState, fmt: WatchFormat, *, bell: bool) -> None:
        self.out, self.fmt, self.bell = st.out, fmt, bell
        self.shown: set[int] = set()
        self.live = 0

    def __call__(self, event: AlertEvent, *, live: bool) -> None:
        from cryptoctl.alerts.events import event_json
        from cryptoctl.render.alerts import event_line

        if event.id in self.shown:
            return
        self.shown.add(event.id)
        self.live += live
        if self.fmt is WatchFormat.jsonl:
            self.out.file.write(event_json(event) + "\n")
            self.out.file.flush()
            return
        end = "\a\n" if live and self.bell else "\n"
        self.out.print(event_line(event), end=end, no_wrap=True, overflow="ellipsis")
        self.out.file.flush()


def register(app: typer.Typer) -> None:
    app.add_typer(alerts_app, name="alerts")
