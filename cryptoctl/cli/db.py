"""`cryptoctl db init`: apply schema.sql to the configured database."""

from __future__ import annotations

import typer

from cryptoctl.cli.context import state

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


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
