"""Static checks of compose/docker-compose.yml (no Docker engine exists where tests run).

Every expectation is derived from the code the CLI runs (cryptoctl.settings defaults,
cryptoctl.kafka.clients), never written down a second time. Each check is a function
that raises AssertionError; ``test_check_catches_mutation`` breaks the file in memory in
one way per check and shows that the check fails, so no check passes vacuously.
"""

from __future__ import annotations

import base64
import copy
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from cryptoctl.kafka import clients
from cryptoctl.settings import (
    DEFAULT_DATABASE_URL,
    DEFAULT_KAFKA_BOOTSTRAP,
    DEFAULT_REDIS_URL,
    Settings,
    host_port,
)
from cryptoctl.stack import docker

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_PATH = ROOT / "compose" / "docker-compose.yml"
REQUIRED = {"kafka", "kafka-init", "kafka-ui", "timescaledb", "redis", "pgadmin"}
LONG_RUNNING_DATA = ("kafka", "timescaledb", "redis")
INTERNAL_BOOTSTRAP = "kafka:29092"
KAFKA_UI_PORT = urlsplit(docker.PUBLISHED["Kafka UI"]).port
DB = urlsplit(DEFAULT_DATABASE_URL)
REDIS = urlsplit(DEFAULT_REDIS_URL)

Compose = dict[str, Any]


def load() -> Compose:
    data = yaml.safe_load(COMPOSE_PATH.read_text())
    assert isinstance(data, dict)
    return data


def env(service: dict[str, Any]) -> dict[str, str]:
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    return {str(k): str(v) for k, v in raw.items()}


def words(command: Any) -> list[str]:
    return command.split() if isinstance(command, str) else [str(c) for c in command or []]


def published(service: dict[str, Any]) -> dict[int, tuple[str, int]]:
    """container port -> (host ip, host port), from short or long port syntax."""
    out: dict[int, tuple[str, int]] = {}
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            ip, host, target = entry.get("host_ip", ""), entry["published"], entry["target"]
        else:
            parts = str(entry).split(":")
            ip = parts[0] if len(parts) == 3 else ""
            host, target = parts[-2], parts[-1]
        out[int(str(target).split("/")[0])] = (ip, int(host))
    return out


def listeners(value: str) -> dict[str, tuple[str, int]]:
    """"NAME://host:port,..." -> {NAME: (host, port)}"""
    out = {}
    for item in value.split(","):
        name, _, address = item.strip().partition("://")
        host, _, port = address.rpartition(":")
        out[name] = (host, int(port))
    return out


def interpolate_default(value: str) -> tuple[str | None, str]:
    """``${VAR:-default}rest`` -> (VAR, default+rest); plain text -> (None, text)."""
    found = re.fullmatch(r"\$\{(\w+):-([^}]*)\}(.*)", value)
    return (found.group(1), found.group(2) + found.group(3)) if found else (None, value)


def expected_topics(monkeypatch: pytest.MonkeyPatch) -> dict[str, tuple[int, dict[str, str]]]:
    """What `cryptoctl up` creates with default settings: topic -> (partitions, config)."""
    created: dict[str, tuple[int, dict[str, str]]] = {}

    def create(settings: Settings, name: str, partitions: int, config: Any = None) -> bool:
        created[name] = (partitions, dict(config or clients.TOPIC_CONFIG))
        return True

    monkeypatch.setattr(
        clients, "check_kafka", lambda s, timeout=5.0: clients.ClusterInfo(None, 1, {})
    )
    monkeypatch.setattr(clients, "create_topic", create)
    clients.ensure_topics(Settings())
    return created


def run_init_script(service: dict[str, Any], tmp_path: Path) -> dict[str, tuple[int, dict]]:
    """Run kafka-init's script with kafka-topics.sh replaced by a recorder."""
    assert words(service["entrypoint"]) == ["/bin/bash", "-ec"]
    script = service["command"][0]
    assert not re.search(r"(?<!\$)\$(?!\$)", script.replace("$$", "")), (
        "a single $ in kafka-init's command is interpolated by compose, not bash"
    )
    script = script.replace("$$", "$").replace("/opt/kafka/bin/kafka-topics.sh", "record")
    record = tmp_path / "record"
    record.write_text('#!/bin/sh\nprintf "%s\\n" "$*" >> "$RECORD_LOG"\n')
    record.chmod(0o755)
    log = tmp_path / "calls"
    environ = {"PATH": f"{tmp_path}:/usr/bin:/bin", "RECORD_LOG": str(log), **env(service)}
    subprocess.run(["bash", "-ec", script], env=environ, check=True, capture_output=True)
    made: dict[str, tuple[int, dict]] = {}
    for line in log.read_text().splitlines():
        args = line.split()
        assert "--create" in args and args[args.index("--bootstrap-server") + 1] == (
            INTERNAL_BOOTSTRAP
        )
        configs = [args[i + 1] for i, a in enumerate(args) if a == "--config"]
        name = args[args.index("--topic") + 1]
        made[name] = (
            int(args[args.index("--partitions") + 1]),
            dict(c.split("=", 1) for c in configs),
        )
    return made


# --- checks ------------------------------------------------------------------------------


def check_required_services(c: Compose) -> None:
    missing = REQUIRED - set(c["services"])
    assert not missing, f"services missing: {missing}"


def check_kraft_no_zookeeper(c: Compose) -> None:
    for name, svc in c["services"].items():
        assert "zookeeper" not in name.lower() and "zookeeper" not in str(svc.get("image"))
        assert not any("ZOOKEEPER" in key for key in env(svc)), name
    kafka = c["services"]["kafka"]
    assert re.match(r"(apache|bitnami)/kafka:", kafka["image"])
    e = env(kafka)
    roles = e.get("KAFKA_PROCESS_ROLES") or e.get("KAFKA_CFG_PROCESS_ROLES", "")
    assert set(roles.split(",")) == {"broker", "controller"}
    voters = e.get("KAFKA_CONTROLLER_QUORUM_VOTERS") or e.get("KAFKA_CFG_CONTROLLER_QUORUM_VOTERS")
    assert voters and voters.startswith(f"{e.get('KAFKA_NODE_ID', e.get('KAFKA_CFG_NODE_ID'))}@")
    cluster_id = e.get("CLUSTER_ID") or e.get("KAFKA_KRAFT_CLUSTER_ID", "")
    assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16, "CLUSTER_ID: base64 UUID"


def check_listeners(c: Compose) -> None:
    e = env(c["services"]["kafka"])
    advertised = listeners(e["KAFKA_ADVERTISED_LISTENERS"])
    bound = listeners(e["KAFKA_LISTENERS"])
    protocols = dict(p.split(":") for p in e["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    ext_host, ext_port = host_port(DEFAULT_KAFKA_BOOTSTRAP, 9092)
    external = [n for n, address in advertised.items() if address == (ext_host, ext_port)]
    internal = [n for n, (h, p) in advertised.items() if f"{h}:{p}" == INTERNAL_BOOTSTRAP]
    assert external, f"no listener advertised as {DEFAULT_KAFKA_BOOTSTRAP} (the CLI default)"
    assert internal, f"no listener advertised as {INTERNAL_BOOTSTRAP} for containers"
    assert e["KAFKA_INTER_BROKER_LISTENER_NAME"] in internal
    for name in advertised:
        assert name in protocols and name in bound, name
        assert bound[name][1] == advertised[name][1], f"{name} binds another port"
    ports = published(c["services"]["kafka"])
    assert ports.get(bound[external[0]][1], ("", 0))[1] == ext_port, "external port unpublished"
    assert bound[internal[0]][1] not in ports, "the internal listener must not be published"
    ui = env(c["services"]["kafka-ui"])
    assert ui["KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS"] == INTERNAL_BOOTSTRAP


def check_health_checks(c: Compose) -> None:
    for name, svc in c["services"].items():
        check = svc.get("healthcheck") or {}
        test = words(check.get("test"))
        assert test and test[0] in {"CMD", "CMD-SHELL"} and len(test) > 1, name
        assert not check.get("disable"), name


def check_profiles(c: Compose) -> None:
    for name, svc in c["services"].items():
        expected = ["tools"] if name == "pgadmin" else []
        assert (svc.get("profiles") or []) == expected, f"{name} profiles"


def check_ports(c: Compose) -> None:
    services = c["services"]
    _, kafka_port = host_port(DEFAULT_KAFKA_BOOTSTRAP, 9092)
    wanted = {
        "kafka": kafka_port,
        "timescaledb": DB.port or 5432,
        "redis": REDIS.port or 6379,
        "kafka-ui": KAFKA_UI_PORT,
    }
    for name, port in wanted.items():
        host_ports = {hp for _, hp in published(services[name]).values()}
        assert port in host_ports, f"{name} must be published on {port}"
    assert published(services["timescaledb"])[5432][1] == DB.port
    assert published(services["redis"])[6379][1] == REDIS.port
    for name, svc in services.items():
        for ip, _ in published(svc).values():
            assert ip in {"", "127.0.0.1"}, f"{name}: bind to loopback or all"


def check_postgres(c: Compose) -> None:
    svc = c["services"]["timescaledb"]
    assert re.fullmatch(r"timescale/timescaledb:latest-pg1[67]", svc["image"])
    e = env(svc)
    assert e["POSTGRES_USER"] == DB.username
    assert e["POSTGRES_PASSWORD"] == DB.password
    assert e["POSTGRES_DB"] == DB.path.lstrip("/")
    assert DB.username in " ".join(words(svc["healthcheck"]["test"]))


def check_schema_mount(c: Compose) -> None:
    mounts = [v for v in c["services"]["timescaledb"]["volumes"] if isinstance(v, str)]
    init = [m for m in mounts if ":/docker-entrypoint-initdb.d/" in m]
    assert len(init) == 1, "schema.sql must be mounted into /docker-entrypoint-initdb.d/"
    source, target = init[0].split(":/docker-entrypoint-initdb.d/")
    assert target.split(":")[0].endswith(".sql")
    var, default = interpolate_default(source)
    assert var == docker.SCHEMA_ENV, "cryptoctl up --docker sets this for installed packages"
    assert (COMPOSE_PATH.parent / default).resolve() == ROOT / "schema.sql"


def check_redis_aof(c: Compose) -> None:
    cmd = words(c["services"]["redis"].get("command"))
    assert "--appendonly" in cmd and cmd[cmd.index("--appendonly") + 1] == "yes"
    assert any(v.endswith(":/data") for v in c["services"]["redis"]["volumes"])


def check_named_volumes(c: Compose) -> None:
    declared = set(c.get("volumes") or {})
    for name, svc in c["services"].items():
        for volume in svc.get("volumes") or []:
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source")
            if source and not source.startswith((".", "/", "$", "~")):
                assert source in declared, f"{name}: volume {source} not declared"
    for name in LONG_RUNNING_DATA:
        sources = [v.split(":")[0] for v in c["services"][name].get("volumes") or []]
        assert any(s in declared for s in sources), f"{name} keeps its data in a named volume"


def check_depends_on(c: Compose) -> None:
    services = c["services"]
    conditions = {"service_healthy", "service_completed_successfully"}
    for name, svc in services.items():
        deps = svc.get("depends_on") or {}
        assert isinstance(deps, dict), f"{name}: depends_on needs conditions"
        for dep, spec in deps.items():
            assert spec.get("condition") in conditions, f"{name} -> {dep}"
            if spec["condition"] == "service_completed_successfully":
                assert services[dep].get("restart") == "no", f"{dep} is not a one-shot"
    assert services["kafka-init"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert services["kafka-ui"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    # `up --wait` counts an exited one-shot as failed unless a running service adopts it.
    for name, svc in services.items():
        if svc.get("restart") == "no":
            adopters = [
                other for other, s in services.items()
                if (s.get("depends_on") or {}).get(name, {}).get("condition")
                == "service_completed_successfully" and not s.get("profiles")
            ]
            assert adopters, f"one-shot {name} must be adopted by a long-running service"


def check_topics(c: Compose, expected: dict[str, Any], tmp_path: Path) -> None:
    init = c["services"]["kafka-init"]
    assert env(init)["BOOTSTRAP"] == INTERNAL_BOOTSTRAP
    assert run_init_script(init, tmp_path) == expected


CHECKS: dict[str, Callable[[Compose], None]] = {
    "required_services": check_required_services,
    "kraft_no_zookeeper": check_kraft_no_zookeeper,
    "listeners": check_listeners,
    "health_checks": check_health_checks,
    "profiles": check_profiles,
    "ports": check_ports,
    "postgres": check_postgres,
    "schema_mount": check_schema_mount,
    "redis_aof": check_redis_aof,
    "named_volumes": check_named_volumes,
    "depends_on": check_depends_on,
}


@pytest.mark.parametrize("name", list(CHECKS))
def test_compose_file(name: str) -> None:
    CHECKS[name](load())


def test_kafka_init_creates_the_topics_cryptoctl_up_creates(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    expected = expected_topics(monkeypatch)
    assert set(expected) == {Settings().topic, Settings().dlq}
    check_topics(load(), expected, tmp_path)


# --- each check can fail -----------------------------------------------------------------


def _svc(c: Compose, name: str) -> dict[str, Any]:
    return c["services"][name]


def _set_env(service: str, key: str, value: str | None) -> Callable[[Compose], None]:
    def mutate(c: Compose) -> None:
        e = _svc(c, service)["environment"]
        if value is None:
            del e[key]
        else:
            e[key] = value

    return mutate


def _add_zookeeper(c: Compose) -> None:
    c["services"]["zookeeper"] = {"image": "zookeeper:3.9", "healthcheck": {"test": ["CMD", "x"]}}


MUTATIONS: list[tuple[str, str, Callable[[Compose], None]]] = [
    ("required_services", "no redis", lambda c: c["services"].pop("redis")),
    ("kraft_no_zookeeper", "zookeeper added", _add_zookeeper),
    ("kraft_no_zookeeper", "broker only", _set_env("kafka", "KAFKA_PROCESS_ROLES", "broker")),
    ("kraft_no_zookeeper", "bad cluster id", _set_env("kafka", "CLUSTER_ID", "not-a-uuid")),
    ("listeners", "external on 19092", _set_env(
        "kafka", "KAFKA_ADVERTISED_LISTENERS", "INTERNAL://kafka:29092,EXTERNAL://localhost:19092"
    )),
    ("listeners", "no internal", _set_env(
        "kafka", "KAFKA_ADVERTISED_LISTENERS", "EXTERNAL://localhost:9092"
    )),
    ("listeners", "ui via host", _set_env(
        "kafka-ui", "KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS", "localhost:9092"
    )),
    ("listeners", "external unpublished", lambda c: _svc(c, "kafka").update(ports=[])),
    ("health_checks", "init without check", lambda c: _svc(c, "kafka-init").pop("healthcheck")),
    ("health_checks", "check disabled", lambda c: _svc(c, "redis")["healthcheck"].update(
        disable=True
    )),
    ("profiles", "pgadmin always on", lambda c: _svc(c, "pgadmin").pop("profiles")),
    ("profiles", "redis in tools", lambda c: _svc(c, "redis").update(profiles=["tools"])),
    ("ports", "postgres on 5433", lambda c: _svc(c, "timescaledb").update(
        ports=["127.0.0.1:5433:5432"]
    )),
    ("ports", "redis on 0.0.0.0", lambda c: _svc(c, "redis").update(
        ports=["0.0.0.0:6379:6379"]
    )),
    ("ports", "ui on 8081", lambda c: _svc(c, "kafka-ui").update(ports=["8081:8080"])),
    ("postgres", "other password", _set_env("timescaledb", "POSTGRES_PASSWORD", "secret")),
    ("postgres", "other db", _set_env("timescaledb", "POSTGRES_DB", "postgres")),
    ("postgres", "plain postgres", lambda c: _svc(c, "timescaledb").update(image="postgres:16")),
    ("schema_mount", "no schema", lambda c: _svc(c, "timescaledb").update(
        volumes=["timescaledb-data:/var/lib/postgresql/data"]
    )),
    ("schema_mount", "wrong file", lambda c: _svc(c, "timescaledb")["volumes"].__setitem__(
        1, "${CRYPTOCTL_SCHEMA_SQL:-./schema.sql}:/docker-entrypoint-initdb.d/1.sql:ro"
    )),
    ("redis_aof", "aof off", lambda c: _svc(c, "redis").update(
        command=["redis-server", "--appendonly", "no"]
    )),
    ("named_volumes", "undeclared volume", lambda c: c["volumes"].pop("redis-data")),
    ("named_volumes", "kafka data in container", lambda c: _svc(c, "kafka").pop("volumes")),
    ("depends_on", "started only", lambda c: _svc(c, "kafka-init")["depends_on"]["kafka"].update(
        condition="service_started"
    )),
    ("depends_on", "init not adopted", lambda c: _svc(c, "kafka-ui")["depends_on"].pop(
        "kafka-init"
    )),
]


@pytest.mark.parametrize(
    ("check", "mutation"), [(m[0], m[2]) for m in MUTATIONS], ids=[m[1] for m in MUTATIONS]
)
def test_check_catches_mutation(check: str, mutation: Callable[[Compose], None]) -> None:
    broken = copy.deepcopy(load())
    mutation(broken)
    with pytest.raises(AssertionError):
        CHECKS[check](broken)


def test_every_check_has_a_mutation() -> None:
    assert {m[0] for m in MUTATIONS} == set(CHECKS)


@pytest.mark.parametrize(
    ("what", "change"),
    [
        ("partitions", ("TOPIC_PARTITIONS", "3")),
        ("dlq name", ("DLQ_TOPIC", "crypto-prices-dlq")),
        ("a config", ("TOPIC_CONFIGS", "cleanup.policy=compact retention.ms=604800000")),
    ],
)
def test_topic_check_catches_mutation(
    what: str, change: tuple[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    expected = expected_topics(monkeypatch)
    broken = copy.deepcopy(load())
    _set_env("kafka-init", *change)(broken)
    with pytest.raises(AssertionError):
        check_topics(broken, expected, tmp_path)
