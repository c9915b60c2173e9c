"""`cryptoctl up`, `down`, `status`: the local (or docker) stack."""

from __future__ import annotations

import enum
import json
import logging
import threading
from typing import TYPE_CHECKING

import typer

from cryptoctl.cli.context import CliState, state
from cryptoctl.cli.options import ViewFormat, duration_option, format_option
from cryptoctl.errors import UsageError

if TYPE_CHECKING:
    from rich.console import RenderableType

    from cryptoctl.settings import Settings
    from cryptoctl.stack.pipeline import HealthRules
    from cryptoctl.stack.status import StackStatus


class Profile(enum.StrEnum):
    tools = "tools"  # the names are stack.docker.PROFILES (a test checks)


def up(
    ctx: typer.Context,
    docker: bool = typer.Option(
        False, "--docker", help="Use compose/docker-compose.yml instead (needs a Docker engine)."
    ),
    profiles: list[Profile] = typer.Option(
        [], "--profile", help="With --docker: also start a compose profile's services (tools: "
        "Prometheus, Grafana with the cryptoctl dashboard, pgAdmin). Repeatable.",
    ),
    partitions: int | None = typer.Option(
        None, "--partitions", min=1, help="Partitions of the price topic when it is created [default: 6]."
    ),
) -> None:
    """Start Kafka, PostgreSQL and Redis on this machine, create topics, apply schema.sql.

    The local runtime needs no Docker: it runs the servers shipped in the `local` extra's
    wheels, keeps their data and logs in the state dir (--home / CRYPTOCTL_HOME), and is
    idempotent: what is already running is left alone.
    """
    st = state(ctx)
    settings = st.settings(partitions=partitions)
    if docker:
        from cryptoctl.stack.docker import docker_up
        from cryptoctl.stack.provision import provision

        with st.err.status("starting the docker compose stack…") as spinner:
            notes = docker_up(
                settings, lambda msg: spinner.update(msg), [p.value for p in profiles]
            )
            provision(settings, progress=lambda msg: spinner.update(f"{msg}…"))
        for note in notes:
            st.err.print(note, markup=False)
        st.err.print("[green]✓[/] docker stack is up; topics and schema ensured")
        return
    if profiles:
        raise UsageError("--profile needs --docker", hint="cryptoctl up --docker --profile tools")
    from cryptoctl.render.stack import up_summary, up_table
    from cryptoctl.stack.local import up as local_up

    with st.err.status("starting the local stack…") as spinner:
        result = local_up(settings, progress=lambda msg: spinner.update(f"{msg}…"))
    st.err.print(up_table(result))
    st.err.print(f"[green]✓[/] {up_summary(result)}")


def down(
    ctx: typer.Context,
    purge: bool = typer.Option(False, "--purge", help="Also delete the stack's data and logs."),
    docker: bool = typer.Option(False, "--docker", help="Stop the docker compose stack instead."),
) -> None:
    """Stop exactly the processes `cryptoctl up` started (SIGTERM, then SIGKILL after 10 s)."""
    st = state(ctx)
    settings = st.settings()
    if docker:
        from cryptoctl.stack.docker import docker_down

        docker_down(settings, purge=purge)
        st.err.print("[green]docker stack is down[/]")
        return
    from cryptoctl.render.stack import down_table
    from cryptoctl.stack.local import down as local_down

    with st.err.status("stopping the local stack…") as spinner:
        outcomes = local_down(settings, purge=purge, progress=lambda m: spinner.update(m))
    st.err.print(down_table(outcomes))
    if purge:
        st.err.print(f"[green]✓[/] data and logs deleted from {settings.home}")


def status(
    ctx: typer.Context,
    fmt: ViewFormat = format_option(ViewFormat.table, "Output format."),
    watch: bool = typer.Option(
        False, "--watch", "-w", help="Refresh until Ctrl-C: in place on a terminal, repeated otherwise."
    ),
    every: int = duration_option("2s", "--every", help="How often --watch refreshes."),
    count: int | None = typer.Option(
        None, "--count", "-n", min=1, help="With --watch: stop after N refreshes."
    ),
    stalled_after: int = duration_option(
        "60s", "--stalled-after",
        help="A partition with messages waiting and no commit for this long is stalled.",
    ),
    lagging_over: int = typer.Option(
        1000, "--lagging-over", min=0, help="A partition with more messages waiting is lagging."
    ),
) -> None:
    """Show every service (up/down, address, version, round-trip ms), topics and tables,
    and the pipeline: per consumer group and partition, the stored offset, the topic's end,
    lag, watermark, last commit and a health word (ok, lagging, stalled, unowned).

    Exits 3 when any service is down, 9 when a partition is stalled, so scripts and
    health checks can use it. --watch exits 0 on Ctrl-C; after --count, as the last report.
    """
    from cryptoctl.stack.pipeline import HealthRules

    st = state(ctx)
    settings = st.settings()
    rules = HealthRules(lagging_over=lagging_over, stalled_after_ms=stalled_after)
    if watch:
        _watch_status(st, settings, rules, fmt, every / 1000, count)
        return
    from cryptoctl.stack.status import stack_status

    result = stack_status(settings, rules)
    _print_status(st, result, fmt)
    error = result.problem()
    if error is not None:
        raise error


def _print_status(st: CliState, result: StackStatus, fmt: ViewFormat) -> None:
    if fmt is ViewFormat.json:
        st.out.print_json(json.dumps(result.to_dict()))
    else:
        from cryptoctl.render.stack import status_view

        st.out.print(status_view(result, width=st.out.width))


def _watch_status(
    st: CliState, settings: Settings, rules: HealthRules, fmt: ViewFormat, every_s: float,
    count: int | None,
) -> None:
    """`status --watch`: a live view on a terminal (table format), else the report again
    every ``every_s`` (JSON: one document per refresh)."""
    from cryptoctl.cli.live import LiveRun, Status
    from cryptoctl.render.stack import status_view
    from cryptoctl.stack.status import stack_status

    live_view = fmt is ViewFormat.table and st.stdout_is_tty
    latest: list[StackStatus] = [stack_status(settings, rules)]

    def view() -> RenderableType:
        return status_view(latest[-1], width=st.out.width)

    run: LiveRun[None] = LiveRun(
        st, Status(view=view if live_view else None, screen="stdout", transient=False,
                   self_refresh=False),
        log_level=logging.WARNING,
    )  # fmt: skip

    def work(stop: threading.Event) -> None:
        shown = 0
        while True:
            if live_view:
                run.refresh()
            else:
                _print_status(st, latest[-1], fmt)
            shown += 1
            if (count is not None and shown >= count) or stop.wait(every_s):
                return
            latest.append(stack_status(settings, rules))
            del latest[:-1]

    run.run(work)
    error = None if run.stop.is_set() else latest[-1].problem()  # --count ran out: say how it was
    if error is not None:
        raise error


def register(app: typer.Typer) -> None:
    app.command()(up)
    app.command()(down)
    app.command()(status)
