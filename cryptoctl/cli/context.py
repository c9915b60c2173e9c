"""What every command shares: the streams, and the settings resolved once.

Commands call ``state(ctx)`` to get a :class:`CliState`. Rich consoles write to whatever
``sys.stdout``/``sys.stderr`` are at the time; whether they are terminals, and how wide,
comes from them too unless a test says otherwise, like httpie's MockEnvironment:
``CliRunner().invoke(app, args, obj=CliState(stdout_isatty=True, width=100))``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from cryptoctl.settings import Settings, load_settings


@dataclass
class CliState:
    """Global flags, resolved into Settings on first use (flag > env > file > default)."""

    global_flags: dict[str, Any] = field(default_factory=dict)
    config_path: Path | None = None
    # None: as sys.stdout/sys.stderr are (and the terminal's width); set: what a test wants.
    stdout_isatty: bool | None = None
    stderr_isatty: bool | None = None
    width: int | None = None
    _settings: Settings | None = None

    def settings(self, **command_flags: Any) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.global_flags, config_path=self.config_path)
        return self._settings.with_overrides(**command_flags)

    @property
    def out(self) -> Console:
        """Data goes here (stdout). Never a live display unless stdout is a terminal."""
        return Console(
            soft_wrap=True, highlight=False, force_terminal=self.stdout_isatty, width=self.width
        )

    @property
    def err(self) -> Console:
        """Logs, progress, status, errors (stderr). Lines are not wrapped, so logs stay
        one line each in a file or a pipe; tables still fit the width."""
        return Console(
            stderr=True, highlight=False, soft_wrap=True, force_terminal=self.stderr_isatty,
            width=self.width,
        )  # fmt: skip

    @property
    def stdout_is_tty(self) -> bool:
        return sys.stdout.isatty() if self.stdout_isatty is None else self.stdout_isatty

    @property
    def stderr_is_tty(self) -> bool:
        return sys.stderr.isatty() if self.stderr_isatty is None else self.stderr_isatty


def state(ctx: typer.Context) -> CliState:
    root = ctx.find_root()
    if not isinstance(root.obj, CliState):
        root.obj = CliState()
    return root.obj
