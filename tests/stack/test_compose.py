"""Static checks of compose/docker-compose.yml (no Docker engine exists where tests run).

Every expectation is derived from the code the CLI runs (cryptoctl.settings defaults,
cryptoctl.kafka.clients), never written down a second time. Each check is a function
that raises AssertionError; ``test_check_catches_mutation`` breaks the file in memory in
one way per check and shows that the check fails, so no check passes vacuously.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from cryptoctl.kafka import clients
from cryptoctl.metrics.collectors import exported_samples
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
REQUIRED = {"kafka", "kafka-init", "kafka-ui", "timescaledb", "redis", "pgadmin", "prometheus",
            "grafana"}  # fmt: skip
TOOLS = {"pgadmin", "prometheus", "grafana"}  # the `tools` profile: started on request
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
        expected = ["tools"] if name in TOOLS else []
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


def bind_mounts(service: dict[str, Any]) -> dict[str, Path]:
    """container path -> the file or directory of this repository mounted there."""
    out = {}
    for volume in service.get("volumes") or []:
        source, target = str(volume).split(":")[:2]
        if source.startswith("."):
            out[target] = (COMPOSE_PATH.parent / source).resolve()
    return out


def flag(service: dict[str, Any], name: str) -> str:
    """The value of ``--name=value`` in a service's command."""
    values = [w.split("=", 1)[1] for w in words(service.get("command")) if w.startswith(f"{name}=")]
    assert len(values) == 1, f"{name} given once"
    return values[0]


def prometheus_config(c: Compose) -> tuple[dict[str, Path], dict[str, Any]]:
    svc = c["services"]["prometheus"]
    mounts = bind_mounts(svc)
    config = mounts.get(flag(svc, "--config.file"))
    assert config is not None and config.is_file(), "prometheus.yml is mounted where it is read"
    return mounts, yaml.safe_load(config.read_text())


def check_monitoring_mounts(c: Compose) -> None:
    """What Prometheus and Grafana read is in this repository and mounted where they read
    it: the config and its rule files, Grafana's provisioning and the dashboard files."""
    for name in ("prometheus", "grafana"):
        for target, source in bind_mounts(c["services"][name]).items():
            assert source.exists(), f"{name}: {source} (mounted at {target}) is missing"
    mounts, config = prometheus_config(c)
    for rules in config.get("rule_files") or []:
        assert rules in mounts and mounts[rules].is_file(), f"rule file {rules} is not mounted"
    grafana = bind_mounts(c["services"]["grafana"])
    provisioning = grafana.get("/etc/grafana/provisioning")
    assert provisioning is not None, "Grafana's provisioning directory is mounted"
    assert list((provisioning / "datasources").glob("*.yml")), "a datasource is provisioned"
    for provider in dashboard_providers(provisioning):
        path = provider["options"]["path"]
        assert path in grafana, f"the dashboards of provider {provider['name']} are not mounted"
        assert list(grafana[path].glob("*.json")), f"no dashboard in {grafana[path]}"


def dashboard_providers(provisioning: Path) -> list[dict[str, Any]]:
    providers = [p for f in sorted((provisioning / "dashboards").glob("*.yml"))
                 for p in yaml.safe_load(f.read_text())["providers"]]  # fmt: skip
    assert providers, "a dashboard provider is provisioned"
    return providers


def check_monitoring_network(c: Compose) -> None:
    """Prometheus reaches the cryptoctl processes where they serve by default (loopback of
    the host), and Grafana's datasource is where Prometheus listens."""
    services = c["services"]
    _, config = prometheus_config(c)
    targets = [t for job in config["scrape_configs"] for sc in job["static_configs"]
               for t in sc["targets"]]  # fmt: skip
    assert targets, "Prometheus scrapes something"
    default_host = Settings().metrics_host
    for target in targets:
        host, _port = host_port(target, 0)
        assert host == default_host, f"{target}: cryptoctl serves metrics on {default_host}"
    if default_host in {"127.0.0.1", "localhost", "::1"}:
        assert services["prometheus"].get("network_mode") == "host", "loopback needs host network"
    listen = flag(services["prometheus"], "--web.listen-address")
    grafana = bind_mounts(services["grafana"])["/etc/grafana/provisioning"]
    urls = [d["url"] for f in (grafana / "datasources").glob("*.yml")
            for d in yaml.safe_load(f.read_text())["datasources"]]  # fmt: skip
    assert urls == [f"http://{listen}"], "Grafana's datasource is compose's Prometheus"
    if listen.startswith("127.0.0.1:"):
        assert services["grafana"].get("network_mode") == "host", "Prometheus is on loopback"


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
    "monitoring_mounts": check_monitoring_mounts,
    "monitoring_network": check_monitoring_network,
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
    ("profiles", "grafana always on", lambda c: _svc(c, "grafana").pop("profiles")),
    ("required_services", "no prometheus", lambda c: c["services"].pop("prometheus")),
    ("monitoring_mounts", "no rule file", lambda c: _svc(c, "prometheus")["volumes"].pop(1)),
    ("monitoring_mounts", "config elsewhere", lambda c: _svc(c, "prometheus")["command"].__setitem__(
        0, "--config.file=/etc/prometheus/other.yml"
    )),
    ("monitoring_mounts", "missing file", lambda c: _svc(c, "grafana")["volumes"].__setitem__(
        1, "./grafana/boards:/etc/grafana/dashboards:ro"
    )),
    ("monitoring_mounts", "no provisioning", lambda c: _svc(c, "grafana")["volumes"].pop(0)),
    ("monitoring_network", "bridge network", lambda c: _svc(c, "prometheus").pop("network_mode")),
    ("monitoring_network", "other listen port", lambda c: _svc(c, "prometheus")["command"].__setitem__(
        1, "--web.listen-address=127.0.0.1:9091"
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


# --- the dashboard and the alert rules name only metrics the code exports --------------------

METRIC = re.compile(r"\bcryptoctl_[a-z0-9_]+\b")
# What the dashboard must show (issue 12): one metric each, by its exported sample name.
DASHBOARD_SHOWS = {
    "ticks/s": "cryptoctl_aggregator_ticks_total",
    "lag per partition": "cryptoctl_consumer_lag_messages",
    "flush latency": "cryptoctl_aggregator_flush_seconds_bucket",
    "late rate": "cryptoctl_aggregator_late_ticks_total",
    "invalid rate": "cryptoctl_aggregator_invalid_total",
    "producer errors": "cryptoctl_producer_errors_total",
    "gaps": "cryptoctl_producer_feed_gaps_open",
}


def dashboard_exprs(c: Compose) -> list[str]:
    grafana = bind_mounts(c["services"]["grafana"])
    exprs = []
    for provider in dashboard_providers(grafana["/etc/grafana/provisioning"]):
        for path in sorted(grafana[provider["options"]["path"]].glob("*.json")):
            dashboard = json.loads(path.read_text())
            exprs += [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    return exprs


def alert_exprs(c: Compose) -> list[str]:
    mounts, config = prometheus_config(c)
    return [rule["expr"] for f in config.get("rule_files") or []
            for group in yaml.safe_load(mounts[f].read_text())["groups"]
            for rule in group["rules"]]  # fmt: skip


def check_promql(exprs: list[str], exported: set[str]) -> None:
    assert exprs, "no queries found"
    for expr in exprs:
        names = set(METRIC.findall(expr))
        assert names, f"{expr!r} names no cryptoctl metric"
        assert names <= exported, f"{expr!r}: {sorted(names - exported)} are not exported"


def test_dashboard_and_alerts_name_only_exported_metrics() -> None:
    c = load()
    exported = exported_samples()
    check_promql(dashboard_exprs(c), exported)
    check_promql(alert_exprs(c), exported)
    named = {n for e in dashboard_exprs(c) for n in METRIC.findall(e)}
    missing = {what for what, metric in DASHBOARD_SHOWS.items() if metric not in named}
    assert not missing, f"the dashboard lacks {sorted(missing)}"
    assert set(DASHBOARD_SHOWS.values()) <= exported


@pytest.mark.parametrize("expr", [
    "rate(cryptoctl_aggregator_tick_total[1m])",  # a typo
    "cryptoctl_aggregator_flush_seconds",  # a histogram's family name is no sample
    "sum(rate(cryptoctl_aggregator_ticks_total[1m])) / sum(cryptoctl_gone)",
    "up",  # no cryptoctl metric at all
])
def test_the_promql_check_catches_an_unexported_name(expr: str) -> None:
    with pytest.raises(AssertionError):
        check_promql([*dashboard_exprs(load()), expr], exported_samples())
