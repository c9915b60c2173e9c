"""`cryptoctl alerts add|list|rm|history|watch`: price alert rules and what they fired."""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import partial

import typer

from cryptoctl.cli.context import state
from cryptoctl.cli.options import (
    FILTER_SYMBOLS_HELP,
    OutputFormat,
    market_source_option,
    quote_option,
    symbols_option,
)
from cryptoctl.cli.query import emit, output_format_option, parse_time
from cryptoctl.errors import UsageError

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


def register(app: typer.Typer) -> None:
    app.add_typer(alerts_app, name="alerts")
