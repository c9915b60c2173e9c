"""The docker runtime against a fake `docker` executable (the remote edge here).

The fake is a small shell script put first and alone on PATH; it logs every invocation
and behaves as told by $FAKE_DOCKER: ok, no-engine, slow-engine, no-compose (the plugin
only; a fake docker-compose still works), up-fails, down-fails.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from cryptoctl.errors import ExitCode, StackError
from cryptoctl.settings import Settings
from cryptoctl.stack import docker

FAKE_DOCKER = r"""#!/bin/sh
prog=${0##*/}
printf '%s %s\n' "$prog" "$*" >> "$FAKE_DOCKER_LOG"
[ "$prog" = docker-compose ] && set -- compose "$@"
case "$1" in
  info)
    case "$FAKE_DOCKER" in
      no-engine)
        echo "Cannot connect to the Docker daemon at unix:///var/run/docker.sock." \
          "Is the docker daemon running?" >&2
        exit 1;;
      slow-engine) exec /bin/sleep 30;;
    esac
    echo 28.2.2; exit 0;;
  compose)
    if [ "$2" = version ]; then
      if [ "$FAKE_DOCKER" = no-compose ] && [ "$prog" = docker ]; then
        echo "docker: unknown command: docker compose" >&2; exit 1
      fi
      echo "${FAKE_COMPOSE_VERSION:-2.29.1}"; exit 0
    fi
    case "$*" in
      *" up "*)
        echo "schema=$CRYPTOCTL_SCHEMA_SQL" >> "$FAKE_DOCKER_LOG"
        echo " Container cryptoctl-kafka-1  Waiting"
        if [ "$FAKE_DOCKER" = up-fails ]; then
          echo "dependency failed to start: container cryptoctl-kafka-1 is unhealthy" >&2
          exit 1
        fi
        echo " Container cryptoctl-kafka-1  Healthy"; exit 0;;
      *" down "*)
        if [ "$FAKE_DOCKER" = down-fails ]; then echo "permission denied" >&2; exit 1; fi
        exit 0;;
    esac;;
esac
echo "fake docker: unexpected $*" >&2
exit 99
"""


class FakeDocker:
    def __init__(self, bin_dir: Path, log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.bin_dir, self.log, self.mp = bin_dir, log, monkeypatch

    def install(self, *names: str) -> None:
        for name in names:
            path = self.bin_dir / name
            path.write_text(FAKE_DOCKER)
            path.chmod(0o755)

    def mode(self, mode: str) -> None:
        self.mp.setenv("FAKE_DOCKER", mode)

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeDocker:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "docker.log"
    monkeypatch.setenv("PATH", str(bin_dir))  # nothing but the fakes: never the real docker
    monkeypatch.setenv("FAKE_DOCKER_LOG", str(log))
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.delenv("CRYPTOCTL_SCHEMA_SQL", raising=False)
    fake = FakeDocker(bin_dir, log, monkeypatch)
    fake.install("docker")
    fake.mode("ok")
    return fake


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home")


def compose_prefix(command: str = "docker compose") -> str:
    return f"{command} --ansi never -f {docker.compose_file()} -p cryptoctl"


def test_available_when_compose_and_engine_answer(fake: FakeDocker) -> None:
    assert docker.docker_available() is None
    assert fake.calls() == [
        "docker compose version",
        "docker info --format {{.ServerVersion}}",
    ]


def test_no_engine_is_a_one_line_reason(fake: FakeDocker) -> None:
    fake.mode("no-engine")
    assert docker.docker_available() == (
        "no Docker engine reachable at unix:///var/run/docker.sock (not answering)"
    )


def test_up_without_engine_raises_stack_error_and_starts_nothing(
    fake: FakeDocker, settings: Settings
) -> None:
    fake.mode("no-engine")
    with pytest.raises(StackError) as err:
        docker.docker_up(settings, lambda line: None)
    assert err.value.exit_code == ExitCode.STACK
    assert "no Docker engine reachable at unix:///var/run/docker.sock" in err.value.message
    assert err.value.hint is not None and "cryptoctl up" in err.value.hint
    assert "\n" not in str(err.value)
    assert not any(" up " in call for call in fake.calls())


def test_down_without_engine_raises_stack_error(fake: FakeDocker, settings: Settings) -> None:
    fake.mode("no-engine")
    with pytest.raises(StackError, match="no Docker engine reachable") as err:
        docker.docker_down(settings, purge=False)
    assert err.value.hint == "the local stack stops with: cryptoctl down"
    assert not any("down" in call for call in fake.calls())


def test_slow_engine_times_out_and_masks_the_docker_host_password(
    fake: FakeDocker, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.mode("slow-engine")
    monkeypatch.setattr(docker, "INFO_TIMEOUT", 0.5)
    monkeypatch.setenv("DOCKER_HOST", "tcp://ops:s3cret@docker.example:2376")
    reason = docker.docker_available()
    assert reason == "no Docker engine reachable at tcp://ops:***@docker.example:2376 (timed out)"


def test_no_docker_command(fake: FakeDocker) -> None:
    (fake.bin_dir / "docker").unlink()
    assert docker.docker_available() == "the docker command is not installed"


def test_no_compose(fake: FakeDocker) -> None:
    fake.mode("no-compose")
    reason = docker.docker_available()
    assert reason is not None and "Docker Compose v2 is not installed" in reason


def test_standalone_docker_compose_is_used_when_the_plugin_is_missing(
    fake: FakeDocker, settings: Settings
) -> None:
    fake.mode("no-compose")
    fake.install("docker-compose")
    docker.docker_up(settings, lambda line: None)
    assert f"{compose_prefix('docker-compose')} up -d --wait" in fake.calls()


def test_compose_v1_is_refused(fake: FakeDocker) -> None:
    fake.mode("no-compose")
    fake.install("docker-compose")
    fake.mp.setenv("FAKE_COMPOSE_VERSION", "1.29.2")
    reason = docker.docker_available()
    assert reason is not None and "Compose v2" in reason


def test_up_runs_compose_up_wait_and_reports_progress(
    fake: FakeDocker, settings: Settings
) -> None:
    lines: list[str] = []
    notes = docker.docker_up(settings, lines.append)
    calls = fake.calls()
    assert f"{compose_prefix()} up -d --wait" in calls
    assert f"schema={docker.schema_file()}" in calls
    assert "Container cryptoctl-kafka-1  Healthy" in lines
    assert "Kafka at localhost:9092" in lines
    assert "PostgreSQL at postgresql://cryptoctl:***@localhost:5432/cryptoctl" in lines
    assert notes == []


def test_up_with_a_profile_starts_its_services_too(fake: FakeDocker, settings: Settings) -> None:
    docker.docker_up(settings, lambda line: None, ["tools"])
    assert f"{compose_prefix()} --profile tools up -d --wait" in fake.calls()


def test_the_cli_profiles_are_the_compose_files_profiles() -> None:
    from cryptoctl.cli.stack import Profile

    assert tuple(p.value for p in Profile) == docker.PROFILES


def test_up_notes_endpoints_that_do_not_point_at_the_docker_stack(
    fake: FakeDocker, settings: Settings
) -> None:
    lines: list[str] = []
    other = Settings(home=settings.home, kafka_bootstrap="broker.example:9093")
    notes = docker.docker_up(other, lines.append)
    assert notes == [
        "note: Kafka is configured as broker.example:9093, the docker stack publishes "
        "localhost:9092"
    ]


def test_up_failure_names_compose_last_line(fake: FakeDocker, settings: Settings) -> None:
    fake.mode("up-fails")
    with pytest.raises(StackError) as err:
        docker.docker_up(settings, lambda line: None)
    assert err.value.message == (
        "docker compose up failed (exit 1): "
        "dependency failed to start: container cryptoctl-kafka-1 is unhealthy"
    )
    assert err.value.hint is not None and "docker compose -p cryptoctl logs" in err.value.hint


@pytest.mark.parametrize(("purge", "tail"), [(False, ""), (True, " -v")])
def test_down_removes_the_project_including_profiles(
    fake: FakeDocker, settings: Settings, purge: bool, tail: str
) -> None:
    docker.docker_down(settings, purge=purge)
    assert fake.calls()[-1] == f"{compose_prefix()} --profile tools down --remove-orphans{tail}"


def test_down_failure_is_a_stack_error(fake: FakeDocker, settings: Settings) -> None:
    fake.mode("down-fails")
    with pytest.raises(StackError, match=r"docker compose down failed \(exit 1\): permission"):
        docker.docker_down(settings, purge=True)


def test_compose_file_is_found_and_packaged() -> None:
    path = docker.compose_file()
    assert path.is_file() and path.name == docker.COMPOSE_FILE_NAME
    root = Path(__file__).resolve().parents[2]
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    force = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    assert force["compose/docker-compose.yml"] == f"cryptoctl/stack/{docker.COMPOSE_FILE_NAME}"
