"""A short flag means one thing in every command: `-s` the symbols, `-f` the format."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import typer.main

from cryptoctl.cli.app import app
from tests.test_docs import commands


def short_flags(root: Any) -> dict[str, set[tuple[str, ...]]]:
    """-x -> the long names it stands for, over every command (the root's too)."""
    meanings: dict[str, set[tuple[str, ...]]] = defaultdict(set)
    for _, cmd in [("", root), *commands(root)]:
        for param in cmd.params:
            opts = [*param.opts, *param.secondary_opts]
            longs = tuple(sorted(o for o in opts if o.startswith("--")))
            for short in (o for o in opts if len(o) == 2 and o.startswith("-")):
                meanings[short].add(longs)
    return meanings


def test_every_short_flag_has_one_meaning() -> None:
    meanings = short_flags(typer.main.get_command(app))
    assert {flag: len(longs) for flag, longs in meanings.items() if len(longs) > 1} == {}
    assert meanings["-s"] == {("--symbol", "--symbols")}
    assert meanings["-f"] == {("--format",)}
    assert meanings["-d"] == {("--duration",)}
    assert meanings["-t"] == {("--topic",)}


def test_the_check_sees_two_meanings() -> None:
    fake = typer.Typer()

    @fake.command()
    def one(source: str = typer.Option("", "--source", "-s")) -> None:
        """One."""

    @fake.command()
    def two(symbol: str = typer.Option("", "--symbol", "-s")) -> None:
        """Two."""

    assert short_flags(typer.main.get_command(fake))["-s"] == {("--source",), ("--symbol",)}
