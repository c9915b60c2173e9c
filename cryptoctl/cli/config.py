"""`cryptoctl config`: the resolved settings, passwords masked."""

from __future__ import annotations

import json

import typer

from cryptoctl.cli.context import state
from cryptoctl.cli.options import ViewFormat, format_option


def config(
    ctx: typer.Context,
    fmt: ViewFormat = format_option(ViewFormat.table, "Output format."),
) -> None:
    """Print the resolved settings (flag > environment > config file > default) and their origin."""
    from cryptoctl.settings import display_settings

    st = state(ctx)
    settings = st.settings()
    values = display_settings(settings)
    if fmt is ViewFormat.json:
        st.out.print_json(json.dumps(values))
        return
    from cryptoctl.render.config import settings_table

    st.out.print(settings_table(values, settings.origins))


def register(app: typer.Typer) -> None:
    app.command()(config)
