"""`cryptoctl config`: the resolved settings, passwords masked."""

from __future__ import annotations

import json

import typer

from cryptoctl.cli.context import OutputFormat, state


def config(
    ctx: typer.Context,
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", "-f", help="table or json."),
) -> None:
    """Print the resolved settings (flag > environment > config file > default) and their origin."""
    from cryptoctl.settings import display_settings

    st = state(ctx)
    settings = st.settings()
    values = display_settings(settings)
    if fmt is OutputFormat.json:
        st.out.print_json(json.dumps(values))
        return
    from cryptoctl.render.config import settings_table

    st.out.print(settings_table(values, settings.sources))


def register(app: typer.Typer) -> None:
    app.command()(config)
