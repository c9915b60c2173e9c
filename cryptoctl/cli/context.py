"""What every command shares: the streams, the resolved settings, and option helpers.

Commands call ``state(ctx)`` to get a :class:`CliState`; tests swap nothing here because
Rich consoles write to whatever ``sys.stdout``/``sys.stderr`` are at the time.
"""

from __future__ import annotations

import enum
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from cryptoctl.durations import parse_duration_ms
from cryptoctl.settings import Settings, load_settings


class OutputFormat(str, enum.Enum):
    table = "table"
    json = "json"
    csv = "csv"


class ViewFormat(str, enum.Enum):
    """For commands whose output is not rows (status, config): no csv."""

    table = "table"
    json = "json"


@dataclass
class CliState:
    """Global flags, resolved into Settings on first use (flag > env > file > default)."""

    global_flags: dict[str, Any] = field(default_factory=dict)
    config_path: Path | None = None
    _settings: Settings | None = None

    def settings(self, **command_flags: Any) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.global_flags, config_path=self.config_path)
        return self._settings.with_overrides(**command_flags)

    @property
    def out(self) -> Console:
        """Data goes here (stdout). Never a live display unless stdout is a terminal."""
        return Console(soft_wrap=True, highlight=False)

    @property
    def err(self) -> Console:
        """Logs, progress, status, errors (stderr). Lines are not wrapped, so logs stay
        one line each in a file or a pipe; tables still fit the width."""
        return Console(stderr=True, highlight=False, soft_wrap=True)

    @property
    def stdout_is_tty(self) -> bool:
        return sys.stdout.isatty()

    @property
    def stderr_is_tty(self) -> bool:
        return sys.stderr.isatty()


def state(ctx: typer.Context) -> CliState:
    root = ctx.find_root()
    if not isinstance(root.obj, CliState):
        root.obj = CliState()
    return root.obj


def duration_option(value: str | None) -> int | None:
    """Typer callback: a duration string -> milliseconds, bad values exit 2 with an example."""
    if value is None:
        return None
    try:
        return parse_duration_ms(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def positive_duration_option(value: str | None) -> int | None:
    ms = duration_option(value)
    if ms is not None and ms <= 0:
        raise typer.BadParameter("must be greater than zero (e.g. 10s)")
    return ms
