"""`cryptoctl up`, `down`, `status`: the local (or docker) stack."""

from __future__ import annotations

import enum
import json

import typer

from cryptoctl.cli.context import state
from cryptoctl.cli.options import ViewFormat, format_option
from cryptoctl.errors import UsageError


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
) -> None:
    """Show every service (up/down, address, version, round-trip ms), topics and tables.

    Exits 3 when any service is down, so scripts can wait on it.
    """
    st = state(ctx)
    from cryptoctl.stack.status import stack_status

    result = stack_status(st.settings())
    if fmt is ViewFormat.json:
        st.out.print_json(json.dumps(result.to_dict()))
    else:
        from cryptoctl.render.stack import status_view

        st.out.print(status_view(result, width=st.out.width))
    error = result.unavailable()
    if error is not None:
        raise error


def register(app: typer.Typer) -> None:
    app.command()(up)
    app.command()(down)
    app.command()(status)
