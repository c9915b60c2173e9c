"""The ``cryptoctl`` Typer app and the one place errors become a line and an exit code."""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
from pathlib import Path
from typing import Any, NoReturn

import typer
from typer.core import TyperGroup
from typer.exceptions import TyperException

from cryptoctl import __version__
from cryptoctl.cli.context import state
from cryptoctl.errors import CryptoctlError, ExitCode, InternalError, UsageError
from cryptoctl.settings import redact

# Order of commands in --help; modules in cryptoctl.cli with a register(app) function are
# discovered, so a new command module needs no edit here.
COMMAND_ORDER = [
    "run", "up", "down", "status", "produce", "watch", "aggregate",
    "candles", "prices", "stats", "alerts", "db", "config",
]


def report_error(exc: CryptoctlError) -> None:
    """One red line on stderr: what failed, where, what to do. Never a traceback."""
    from rich.console import Console
    from rich.markup import escape

    # One line whatever a library's text held (psycopg's end in a newline); messages are
    # built with passwords masked, and this is the last line of defence.
    line = f"[bold red]error:[/] {escape(_one_line(exc.message))}"
    if exc.hint:
        line += f" [dim]—[/] {escape(_one_line(exc.hint))}"
    Console(stderr=True, highlight=False, soft_wrap=True).print(line)


def _one_line(text: str) -> str:
    return redact(" ".join(text.split()))


def _internal(exc: Exception) -> InternalError:
    """An unexpected exception as one line; URLs in its text lose their passwords."""
    text = redact(" ".join(str(exc).split())) or "no details"
    return InternalError(
        f"internal error: {type(exc).__name__}: {text}",
        hint="this is a bug; CRYPTOCTL_DEBUG=1 shows the traceback",
    )


def _closed_stdout() -> NoReturn:
    """The reader of stdout went away (`cryptoctl ... | head -1`): stop quietly with 0,
    like any Unix filter (click alone would exit 1)."""
    _discard_stdout()
    raise typer.Exit(int(ExitCode.OK))


class CryptoctlGroup(TyperGroup):
    def list_commands(self, ctx: Any) -> list[str]:
        rank = {name: i for i, name in enumerate(COMMAND_ORDER)}
        return sorted(self.commands, key=lambda n: (rank.get(n, len(rank)), n))

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        try:  # eager options print here: --help, --version
            return super().make_context(*args, **kwargs)
        except BrokenPipeError:
            _closed_stdout()

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except CryptoctlError as exc:
            report_error(exc)
            raise typer.Exit(int(exc.exit_code)) from None
        except (typer.Exit, typer.Abort, TyperException):
            raise  # usage errors and exits: typer reports them (exit 2 with a hint)
        except BrokenPipeError:
            _closed_stdout()
        except Exception as exc:
            if os.environ.get("CRYPTOCTL_DEBUG"):
                raise
            error = _internal(exc)
            report_error(error)
            raise typer.Exit(int(error.exit_code)) from None


app = typer.Typer(
    name="cryptoctl",
    cls=CryptoctlGroup,
    help=(
        "Real-time crypto market pipeline: prices -> Kafka -> event-time OHLC candles in "
        "PostgreSQL, latest values in Redis, watched live in the terminal.\n\n"
        "Start with `cryptoctl run`: it brings up the local stack (Kafka-protocol broker, "
        "PostgreSQL, Redis; no Docker) and runs the whole pipeline with a dashboard."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode="markdown",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"cryptoctl {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    ctx: typer.Context,
    config: Path | None = typer.Option(
        None, "--config", envvar="CRYPTOCTL_CONFIG", help="Config file (TOML).",
        show_envvar=True,
    ),
    home: Path | None = typer.Option(
        None, "--home", help="State dir of the local stack [env CRYPTOCTL_HOME]."
    ),
    kafka: str | None = typer.Option(
        None, "--kafka", help="Kafka bootstrap servers [env CRYPTOCTL_KAFKA_BOOTSTRAP]."
    ),
    database_url: str | None = typer.Option(
        None, "--database-url", help="PostgreSQL URL [env CRYPTOCTL_DATABASE_URL, DATABASE_URL]."
    ),
    db_schema: str | None = typer.Option(
        None, "--db-schema", help="PostgreSQL schema for cryptoctl's tables [env CRYPTOCTL_DB_SCHEMA]."
    ),
    redis_url: str | None = typer.Option(
        None, "--redis-url", help="Redis URL [env CRYPTOCTL_REDIS_URL]."
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    st = state(ctx)
    st.config_path = config
    st.global_flags = {
        "home": home,
        "kafka_bootstrap": kafka,
        "database_url": database_url,
        "db_schema": db_schema,
        "redis_url": redis_url,
    }


def _register_commands() -> None:
    import cryptoctl.cli as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name in {"app", "context"}:
            continue
        module = importlib.import_module(f"cryptoctl.cli.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(app)


_register_commands()


# click's UsageError and ClickException, by way of a public name: newer Typer vendors
# click under a private module, older Typer uses click itself.
_UsageError: type[Exception] = typer.BadParameter.__bases__[0]
_ClickException: type[Exception] = _UsageError.__bases__[0]


def main() -> None:
    stdout_was_null = _stdout_is_null()
    try:
        # Not standalone: click would print usage errors as a multi-line panel.
        code = app(prog_name="cryptoctl", standalone_mode=False)
        sys.stdout.flush()  # here, so a closed pipe is caught below and not at exit
    except BrokenPipeError:
        _discard_stdout()
        sys.exit(int(ExitCode.OK))
    except SystemExit as exc:
        # Rich meets a closed pipe (help text, tables) by pointing stdout at /dev/null
        # and exiting 1. A reader that stopped early (`| head -1`) is no failure.
        if exc.code == 1 and not stdout_was_null and _stdout_is_null():
            sys.exit(int(ExitCode.OK))
        raise
    except _ClickException as exc:  # a usage error, or e.g. a file option that cannot be opened
        error = _usage_error(exc)
        report_error(error)
        sys.exit(int(error.exit_code))
    except (KeyboardInterrupt, typer.Abort):
        sys.stderr.write("interrupted\n")
        sys.exit(int(ExitCode.INTERRUPTED))
    sys.exit(code if isinstance(code, int) else 0)


def _discard_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


def _stdout_is_null() -> bool:
    try:
        mine, null = os.fstat(sys.stdout.fileno()), os.stat(os.devnull)
    except (OSError, ValueError):  # no real stdout (a test's StringIO)
        return False
    return (mine.st_dev, mine.st_ino) == (null.st_dev, null.st_ino)


def _usage_error(exc: Any) -> UsageError:
    """A click error as our one line; a usage error gets the command's --help as the hint."""
    message = exc.format_message().replace("\n", " ")
    if not isinstance(exc, _UsageError):
        return UsageError(message)
    ctx = getattr(exc, "ctx", None)
    where = ctx.command_path if ctx is not None else "cryptoctl"
    return UsageError(message, hint=f"see `{where} --help`")
