"""Running a long command: the work, its live status, Ctrl-C/SIGTERM and its log lines.

`produce`, `aggregate`, `run` and `watch` all go through :class:`LiveRun`:

- the work runs on this thread, or in a worker thread whose exception is re-raised here;
- the first Ctrl-C/SIGTERM sets the work's stop event (and says so); a second Ctrl-C aborts
  (KeyboardInterrupt -> exit 130 in ``cryptoctl.cli.app.main``), after an optional line;
- the ``cryptoctl`` logger goes to stderr, one line per record (time, level, message), never
  wrapped and never read as Rich markup;
- the status is a Rich Live display when its stream is a terminal (``view``), or a plain
  ``line`` every few seconds on stderr when it is not.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from rich.console import ConsoleRenderable, RenderableType
from rich.logging import RichHandler
from rich.text import Text

from cryptoctl.cli.signals import stop_on_signals

if TYPE_CHECKING:
    from rich.live import Live

    from cryptoctl.cli.context import CliState

T = TypeVar("T")

PLAIN_STATUS_EVERY_S = 5.0


@dataclass(frozen=True)
class Status:
    """What to show while the work runs.

    ``view`` is drawn on ``screen`` (stderr for a status line, stdout for a dashboard) when
    that stream is a terminal; otherwise ``line`` is printed to stderr every ``every_s``.
    """

    view: Callable[[], RenderableType] | None = None
    line: Callable[[], str] | None = None
    screen: Literal["stdout", "stderr"] = "stderr"
    transient: bool = True  # clear the display at the end (a status line), or keep it
    refresh_s: float = 0.25
    every_s: float = PLAIN_STATUS_EVERY_S
    # False: redrawn only when the work calls LiveRun.refresh (its state is not
    # thread-safe to read, as `watch`'s is not).
    self_refresh: bool = True


class LiveRun(Generic[T]):
    def __init__(
        self,
        st: CliState,
        status: Status | None = None,
        *,
        on_stop: Callable[[], str] | None = None,
        on_abort: Callable[[], str] | None = None,
        log_level: int = logging.INFO,
    ) -> None:
        self.status = status or Status()
        self.on_stop = on_stop  # the line said on the first Ctrl-C/SIGTERM
        self.on_abort = on_abort  # the line said when a second Ctrl-C aborts
        self.log_level = log_level
        self.stop = threading.Event()  # set by a signal, or by whoever else ends the work
        self._st = st
        self._err = st.err
        self._console = self._err  # where lines go: the live display's console while it runs
        self._live: Live | None = None
        self._next_line = 0.0
        self._lock = threading.Lock()

    # --- the run -----------------------------------------------------------------

    def run(self, work: Callable[[threading.Event], T], *, in_thread: bool = False) -> T:
        """``work(stop)`` until it returns; its result, or its exception raised here."""
        stop = self.stop
        with _log_to(self), stop_on_signals(stop, on_stop=self._stopping):
            try:
                with self._display():
                    return self._thread(work, stop) if in_thread else self._here(work, stop)
            except KeyboardInterrupt:  # the second Ctrl-C: no waiting for the work to finish
                if self.on_abort is not None:
                    self.say(self.on_abort(), style="yellow")
                raise

    def _here(self, work: Callable[[threading.Event], T], stop: threading.Event) -> T:
        if not self.status.self_refresh or not self._shows_anything():
            return work(stop)
        done = threading.Event()

        def ticker() -> None:
            while not done.wait(self.status.refresh_s):
                self.refresh()

        thread = threading.Thread(target=ticker, name="cryptoctl-status", daemon=True)
        thread.start()
        try:
            return work(stop)
        finally:
            done.set()
            thread.join(1.0)

    def _thread(self, work: Callable[[threading.Event], T], stop: threading.Event) -> T:
        outcome: dict[str, Any] = {}

        def target() -> None:
            try:
                outcome["result"] = work(stop)
            except BaseException as exc:  # re-raised on the main thread, reported in one place
                outcome["error"] = exc

        worker = threading.Thread(target=target, name="cryptoctl-work", daemon=True)
        worker.start()
        while worker.is_alive():
            worker.join(self.status.refresh_s)
            if worker.is_alive() and self.status.self_refresh:
                self.refresh()
        if "error" in outcome:
            raise outcome["error"]
        return outcome["result"]

    # --- status and lines --------------------------------------------------------

    def refresh(self) -> None:
        """Redraw the live display now, or print the plain status line when it is due."""
        status = self.status
        with self._lock:
            if self._live is not None and status.view is not None:
                self._live.update(status.view(), refresh=True)
            elif self._live is None and status.line is not None and time.monotonic() >= self._next_line:
                self._next_line += status.every_s
                self._err.print(status.line(), markup=False, highlight=False)

    def say(self, line: str, style: str = "") -> None:
        """One line on stderr (above the live display while there is one)."""
        self._console.print(line, style=style, markup=False, highlight=False)

    def _stopping(self) -> None:
        if self.on_stop is not None:
            self.say(self.on_stop(), style="yellow")

    def _shows_anything(self) -> bool:
        return self._live is not None or self.status.line is not None

    def _on_terminal(self) -> bool:
        st = self._st
        return st.stdout_is_tty if self.status.screen == "stdout" else st.stderr_is_tty

    @contextmanager
    def _display(self) -> Iterator[None]:
        status = self.status
        self._next_line = time.monotonic() + status.every_s
        if status.view is None or not self._on_terminal():
            yield
            return
        from rich.live import Live

        console = self._st.out if status.screen == "stdout" else self._err
        with Live(
            status.view(), console=console, auto_refresh=False, transient=status.transient
        ) as live:
            self._live, self._console = live, console
            try:
                yield
                self.refresh()  # the last frame: what the work ended with
            finally:
                self._live, self._console = None, self._err


class LineHandler(RichHandler):
    """A log record as one line: ``12:00:40 warning: message``. Messages are plain text
    (no markup, no highlighting) and their newlines become spaces, so a log in a file or
    a pipe stays one line per record."""

    def __init__(self, run: LiveRun[Any], level: int) -> None:
        super().__init__(level, console=run._err, markup=False, show_path=False)
        self._run = run

    def emit(self, record: logging.LogRecord) -> None:
        self.console = self._run._console  # above the live display while there is one
        super().emit(record)

    def render_message(self, record: logging.LogRecord, message: str) -> ConsoleRenderable:
        return Text(" ".join(message.splitlines()))

    def render(
        self,
        *,
        record: logging.LogRecord,
        traceback: Any,
        message_renderable: ConsoleRenderable,
    ) -> ConsoleRenderable:
        when = time.strftime("%H:%M:%S", time.localtime(record.created))
        style = "yellow" if record.levelno >= logging.WARNING else "dim"
        line = Text(f"{when} {record.levelname.lower()}: ", style=style)
        if isinstance(message_renderable, Text):
            line.append_text(message_renderable)
        return line


@contextmanager
def _log_to(run: LiveRun[Any]) -> Iterator[None]:
    """The ``cryptoctl`` logger's records at ``run.log_level`` and above, while it runs."""
    logger = logging.getLogger("cryptoctl")
    handler = LineHandler(run, run.log_level)
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(run.log_level)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)

