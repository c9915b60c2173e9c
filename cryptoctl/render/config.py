"""Rendering of `config`: the resolved settings and where each came from.

Apart from render/stack.py so that `cryptoctl config` loads nothing of the stack
runtimes (psutil among them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.table import Table


def settings_table(values: Mapping[str, Any], origins: Mapping[str, str]) -> Table:
    table = Table(box=None)
    for col in ("setting", "value", "from"):
        table.add_column(col)
    for name, value in values.items():
        table.add_row(name, "-" if value is None else str(value), origins.get(name, "default"))
    return table
