"""The docs keep up with the code: every command has help and is documented, every
setting is in docs/configuration.md, and every relative link resolves.

Commands are discovered from the Typer app, so a new command needs no edit here — only
its help text and a mention (`cryptoctl NAME`) somewhere in docs/.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
import typer.main

from cryptoctl.cli.app import app
from cryptoctl.settings import ENV_VARS, Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
LINKED_FILES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
CODE_SPAN = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def commands(group: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(path, command) for every visible command and sub-command, e.g. ("db init", ...)."""
    for name, cmd in sorted((getattr(group, "commands", None) or {}).items()):
        if cmd.hidden:
            continue
        path = f"{prefix} {name}".strip()
        yield path, cmd
        yield from commands(cmd, path)


def help_problems(root: Any) -> list[str]:
    return [
        f"cryptoctl {path} has no help text"
        for path, cmd in commands(root)
        if not (cmd.help or cmd.short_help or "").strip()
    ]


def mentioned(path: str, text: str) -> bool:
    words = r"\s+".join(re.escape(w) for w in path.split())
    return re.search(rf"cryptoctl\s+{words}(?![\w-])", text) is not None


def docs_problems(root: Any, text: str) -> list[str]:
    return [
        f"cryptoctl {path} is not mentioned in docs/"
        for path, _ in commands(root)
        if not mentioned(path, text)
    ]


def docs_text() -> str:
    return "\n".join(p.read_text() for p in sorted(DOCS.glob("*.md")))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = CODE_SPAN.sub(lambda m: m.group(0).strip("`"), heading.strip().lower())
    return re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", text))


def anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text())
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.M)}


def link_problems(path: Path, root: Path = ROOT) -> list[str]:
    text = CODE_SPAN.sub("", FENCE.sub("", path.read_text()))
    problems = []
    for target in LINK.findall(text):
        if SCHEME.match(target):
            continue
        file_part, _, fragment = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        where = f"{path.relative_to(root)}: link {target}"
        if not dest.exists():
            problems.append(f"{where} points to a missing file")
        elif fragment and dest.suffix == ".md" and fragment not in anchors(dest):
            problems.append(f"{where} points to a missing heading")
    return problems


# --- commands ----------------------------------------------------------------------------


def test_every_command_has_help() -> None:
    assert help_problems(typer.main.get_command(app)) == []


def test_every_command_is_documented() -> None:
    assert docs_problems(typer.main.get_command(app), docs_text()) == []


def test_the_checks_catch_an_undocumented_or_helpless_command() -> None:
    fake = typer.Typer()
    db = typer.Typer(help="Database maintenance.")
    fake.add_typer(db, name="db")

    @fake.command()
    def up() -> None:
        """Start."""

    @fake.command()
    def upgrade() -> None:
        pass

    @fake.command(hidden=True)
    def secret() -> None:
        pass

    @db.command("init")
    def init() -> None:
        """Apply the schema."""

    @db.command("vacuum")
    def vacuum() -> None:
        """Vacuum."""

    root = typer.main.get_command(fake)
    text = "Run `cryptoctl up`, then `cryptoctl db init`."
    assert help_problems(root) == ["cryptoctl upgrade has no help text"]
    assert docs_problems(root, text) == [
        "cryptoctl db vacuum is not mentioned in docs/",
        "cryptoctl upgrade is not mentioned in docs/",
    ]


# --- settings ----------------------------------------------------------------------------


def configuration_text() -> str:
    return (DOCS / "configuration.md").read_text()


@pytest.mark.parametrize(
    "name", [f.name for f in dataclasses.fields(Settings) if f.name != "origins"]
)
def test_every_setting_is_documented(name: str) -> None:
    assert f"`{name}`" in configuration_text()


@pytest.mark.parametrize("var", sorted({v for names in ENV_VARS.values() for v in names}))
def test_every_environment_variable_is_documented(var: str) -> None:
    assert f"`{var}`" in configuration_text()


def test_every_global_flag_is_documented() -> None:
    flags = [
        opt
        for param in typer.main.get_command(app).params
        for opt in param.opts
        if opt.startswith("--")
        and opt not in {"--help", "--version", "--install-completion", "--show-completion"}
    ]
    assert flags
    for flag in flags:
        assert f"`{flag}`" in configuration_text(), flag


def test_config_file_examples_load(tmp_path: Path) -> None:
    blocks = re.findall(r"^```toml\n(.*?)^```", configuration_text(), re.M | re.S)
    assert blocks, "docs/configuration.md has an example config file"
    for i, block in enumerate(blocks):
        path = tmp_path / f"example{i}.toml"
        path.write_text(block)
        settings = load_settings(environ={}, config_path=path)
        assert set(settings.origins.values()) == {"file"}


# --- links -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", LINKED_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path: Path) -> None:
    assert link_problems(path) == []


def test_link_check_catches_broken_links(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other page\n\n## Part two\n")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](other.md) [ok](other.md#part-two) [web](https://example.com) [top](#title)\n"
        "# Title\n"
        "[gone](missing.md) [bad anchor](other.md#part-three)\n"
        "`[in code](nowhere.md)`\n"
        "```\n[in a block](nowhere.md)\n```\n"
    )
    assert link_problems(page, root=tmp_path) == [
        "page.md: link missing.md points to a missing file",
        "page.md: link other.md#part-three points to a missing heading",
    ]
