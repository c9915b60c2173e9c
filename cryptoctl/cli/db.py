"""`cryptoctl db init`: apply schema.sql to the configured database; `db prune`: delete
rows past retention."""

from __future__ import annotations

import json
import time

import typer

from cryptoctl.cli.context import state
from cryptoctl.cli.options import ViewFormat, format_option, parse_positive_duration

db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)


@db_app.command("init")
def init(ctx: typer.Context) -> None:
    """Apply schema.sql to the configured database and schema (idempotent).

    Uses TimescaleDB hypertables when the extension is available, plain tables otherwise.
    """
    from cryptoctl.db.connection import apply_schema, db_address

    st = state(ctx)
    settings = st.settings()
    apply_schema(settings)
    st.err.print(
        f"[green]✓[/] schema applied to {db_address(settings)} (schema {settings.db_schema})"
    )


@db_app.command("prune")
def prune(
    ctx: typer.Context,
    older_than: int = typer.Option(
        ..., "--older-than", parser=parse_positive_duration, metavar="DURATION",
        help="Delete rows older than this, e.g. 30d, 12h (required).",
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Count what would go; delete nothing."),
    candles: bool = typer.Option(
        False, "--candles", help="Also delete final 1m candles older than that (never open ones)."
    ),
    batch_size: int = typer.Option(
        10_000, "--batch-size", min=1, help="Rows per DELETE (each its own short transaction)."
    ),
    fmt: ViewFormat = format_option(ViewFormat.table, "Output format of the counts."),
) -> None:
    """Delete raw ticks and late ticks older than --older-than, in batches; candles only
    with --candles. On TimescaleDB the tick tables' old chunks are dropped instead, and
    the retention policy is reported. Progress on stderr, counts on stdout.
    """
    from cryptoctl.cli.live import PLAIN_STATUS_EVERY_S
    from cryptoctl.db.prune import prune as run_prune
    from cryptoctl.render.db import prune_table

    st = state(ctx)
    settings = st.settings()
    on_terminal, last = st.stderr_is_tty, {"at": 0.0}

    def progress(table: str, rows: int) -> None:
        line = f"pruning {table}: {rows:,} rows…"
        if on_terminal:
            spinner.update(line)
        elif time.monotonic() - last["at"] >= PLAIN_STATUS_EVERY_S:  # a log, not a flood
            last["at"] = time.monotonic()
            st.err.print(line, markup=False, highlight=False)

    with st.err.status("pruning…") as spinner:
        result = run_prune(
            settings, older_than, candles=candles, dry_run=dry_run, batch_size=batch_size,
            progress=progress,
        )  # fmt: skip
    if fmt is ViewFormat.json:
        st.out.print_json(json.dumps(result.to_dict()))
    else:
        st.out.print(prune_table(result))


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
