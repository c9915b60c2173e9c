"""Rendering of alert rules and fired events (pure: rows in, Table or text out)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from rich import box
from rich.table import Table
from rich.text import Text

from cryptoctl.alerts.events import AlertEvent
from cryptoctl.alerts.store import Rule
from cryptoctl.render import numbers as fmt
from cryptoctl.render.tables import fitted

_HOST = re.compile(r"[A-Za-z0-9.-]+(:[0-9]+)?")  # what is shown of a notify URL
DELIVERED_STYLE = {"delivered": "green", "pending": "yellow", "failed": "bold red"}


def _table(title: str) -> Table:
    return Table(
        title=title, title_justify="left", header_style="bold", box=box.SIMPLE_HEAD,
        pad_edge=False, collapse_padding=True,
    )  # fmt: skip


def masked_target(url: str) -> str:
    """A notify URL as a table shows it: scheme and host, the rest (tokens, chat ids, a
    webhook's secret path) masked; ``--format json`` has it in full."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "…"
    host = re.split(r"[/?#]", rest, maxsplit=1)[0].rsplit("@", 1)[-1]  # no user:password@
    if (scheme.lower() not in {"http", "https", "json", "jsons", "xml", "xmls", "form", "forms"}
            or not _HOST.fullmatch(host)):
        host = ""  # apprise services keep their token where a host would be
    return f"{scheme}://{host}/…" if host else f"{scheme}://…"


def rules_table(rules: Sequence[Rule], width: int | None = None) -> Table:
    """One row per rule. Narrow terminals lose the notify targets, then the last firing.
    Notify targets are masked (``masked_target``)."""

    def build(left_out: set[str]) -> Table:
        table = _table("alert rules")
        table.add_column("id", justify="right", no_wrap=True)
        table.add_column("market", no_wrap=True)
        table.add_column("condition", no_wrap=True)
        table.add_column("state", no_wrap=True)
        if "last" not in left_out:
            table.add_column("last fired (UTC)", no_wrap=True)
        if "notify" not in left_out:
            table.add_column("notify", overflow="fold")
        for r in rules:
            state_style = "green" if r.active else "dim"
            cells: list[str | Text] = [str(r.id), r.market, r.describe(), Text(r.state, style=state_style)]
            if "last" not in left_out:
                cells.append(fmt.utc_second(r.last_fired_ms) if r.last_fired_ms is not None else "—")
            if "notify" not in left_out:
                cells.append(", ".join(masked_target(u) for u in r.notify) or "—")
            table.add_row(*cells)
        return table

    return fitted(build, ["notify", "last"], width)


def history_table(events: Sequence[AlertEvent], width: int | None = None) -> Table:
    """One row per fired event, newest first. Narrow terminals lose the reference, the
    firing time, then the rule id."""

    def build(left_out: set[str]) -> Table:
        table = _table("fired alerts")
        table.add_column("id", justify="right", no_wrap=True)
        if "rule" not in left_out:
            table.add_column("rule", justify="right", no_wrap=True)
        table.add_column("market", no_wrap=True)
        table.add_column("condition", overflow="fold", min_width=10)
        table.add_column("price", justify="right", no_wrap=True)
        if "reference" not in left_out:
            table.add_column("reference", justify="right", no_wrap=True)
        table.add_column("tick time (UTC)", no_wrap=True)
        table.add_column("delivered", no_wrap=True)
        for e in events:
            cells: list[str | Text] = [str(e.id)]
            if "rule" not in left_out:
                cells.append(str(e.alert_id))
            cells += [e.market, e.describe(), Text(fmt.price(e.price), style="bold")]
            if "reference" not in left_out:
                cells.append(fmt.price(e.reference) if e.reference is not None else "—")
            cells += [
                fmt.utc_second(e.time_ms),
                Text(e.delivered, style=DELIVERED_STYLE.get(e.delivered, "")),
            ]
            table.add_row(*cells)
        return table

    return fitted(build, ["reference", "rule"], width)


def event_line(e: AlertEvent) -> Text:
    """One line per event, for `alerts watch` and the dashboard (fits 80 columns):
    ``14:05:12  BTC/USDT binance  100,012.50  above 100000  #3``."""
    line = Text()
    line.append(fmt.utc_clock(e.time_ms), style="dim")
    line.append("  ")
    line.append(f"{e.symbol}/{e.quote}", style="bold")
    line.append(f" {e.source}  ", style="dim")
    line.append(fmt.price(e.price), style="bold yellow")
    line.append(f"  {e.describe()}")
    if e.reference is not None:
        line.append(f" from {fmt.price(e.reference)}", style="dim")
    line.append(f"  #{e.alert_id}", style="dim")
    return line
