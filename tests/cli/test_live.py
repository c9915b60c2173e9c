"""The live-run helper of the long-running commands, in-process: the terminal and the
not-a-terminal branches are chosen by CliState's tty flags, so no pty is needed here."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest
import typer
from rich.text import Text
from typer.testing import CliRunner

from cryptoctl.cli.context import CliState, state
from cryptoctl.cli.live import LiveRun, Status
from tests.watch.pty_terminal import plain

ESC = "\x1b["


def fake_app(in_thread: bool, screen: str = "stderr") -> typer.Typer:
    """One command whose work counts to 5, logs and shows `status N` while it runs."""
    app = typer.Typer()

    @app.command()
    def count(ctx: typer.Context) -> None:
        st = state(ctx)
        done: list[int] = []

        def work(stop: threading.Event) -> str:
            for i in range(5):
                done.append(i)
                logging.getLogger("cryptoctl.test").warning("tick [bold]%d[/]\nsecond line", i)
                time.sleep(0.08)
            return f"counted {len(done)} on {threading.current_thread().name}"

        status = Status(
            view=lambda: Text(f"status {len(done)}"), line=lambda: f"plain {len(done)}",
            screen="stdout" if screen == "stdout" else "stderr", refresh_s=0.02, every_s=0.1,
        )  # fmt: skip
        st.out.print(LiveRun(st, status).run(work, in_thread=in_thread), markup=False)

    return app


def invoke(app: typer.Typer, obj: CliState) -> Any:
    result = CliRunner().invoke(app, [], obj=obj, catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return result


@pytest.mark.parametrize("in_thread", [False, True])
def test_on_a_terminal_a_live_status_is_drawn_on_stderr(in_thread: bool) -> None:
    result = invoke(fake_app(in_thread), CliState(stderr_isatty=True, width=60))
    assert ESC in result.stderr  # drawn and redrawn with cursor movements
    screen = plain(result.stderr.encode())
    assert "status 5" in screen  # the last frame, before the transient line is cleared
    assert "plain" not in screen  # no periodic lines on a terminal
    worker = "cryptoctl-work" if in_thread else "MainThread"
    assert result.stdout == f"counted 5 on {worker}\n"
    # Each log record is one line of plain text (no markup read from it), above the status.
    logged = [line for line in screen.splitlines() if "warning: tick" in line]
    assert [line.split(" ", 1)[1] for line in logged] == [
        f"warning: tick [bold]{i}[/] second line" for i in range(5)
    ]


@pytest.mark.parametrize("in_thread", [False, True])
def test_off_a_terminal_a_plain_status_line_now_and_then(in_thread: bool) -> None:
    result = invoke(fake_app(in_thread), CliState(stdout_isatty=False, stderr_isatty=False, width=40))
    assert ESC not in result.stderr and ESC not in result.stdout
    lines = result.stderr.splitlines()
    plain_lines = [line for line in lines if line.startswith("plain ")]
    assert 2 <= len(plain_lines) <= 5, lines  # every 0.1 s of 0.4 s
    assert [int(line.split()[1]) for line in plain_lines] == sorted(int(x.split()[1]) for x in plain_lines)
    assert not any(line.startswith("status") for line in lines)
    # Longer than the 40 columns, still one line each: logs are never wrapped.
    logged = [line for line in lines if "warning: tick" in line]
    assert len(logged) == 5 and all(line.endswith("[/] second line") for line in logged)
    assert len(lines) == len(plain_lines) + len(logged)


def test_a_dashboard_goes_to_stdout_on_a_terminal_and_keeps_its_last_frame() -> None:
    result = invoke(fake_app(True, screen="stdout"), CliState(stdout_isatty=True, stderr_isatty=False))
    assert ESC in result.stdout
    screen = plain(result.stdout.encode())
    assert "status 5" in screen and screen.rstrip().endswith("counted 5 on cryptoctl-work")
    # The log lines went above the display (the live console); stderr got no status.
    assert "warning: tick [bold]0[/] second line" in screen
    assert "status" not in result.stderr and "plain" not in result.stderr


def test_a_dashboard_off_a_terminal_is_plain_lines_on_stderr() -> None:
    result = invoke(fake_app(True, screen="stdout"), CliState(stdout_isatty=False, stderr_isatty=True))
    assert result.stdout == "counted 5 on cryptoctl-work\n"
    assert "plain " in result.stderr and "status" not in result.stderr


def test_a_worker_exception_is_raised_on_the_main_thread() -> None:
    class Boom(Exception):
        pass

    def work(stop: threading.Event) -> None:
        raise Boom(threading.current_thread().name)

    with pytest.raises(Boom, match="cryptoctl-work"):
        LiveRun(CliState(stderr_isatty=False)).run(work, in_thread=True)


def test_the_logger_is_left_as_it_was() -> None:
    logger = logging.getLogger("cryptoctl")
    before = (list(logger.handlers), logger.level)
    seen: list[int] = []
    LiveRun(CliState(stderr_isatty=False), log_level=logging.WARNING).run(
        lambda stop: seen.append(logger.getEffectiveLevel())
    )
    assert seen == [logging.WARNING]
    assert (list(logger.handlers), logger.level) == before
