"""What the Kafka clients are configured with: cryptoctl's tuning, the [kafka] table over
it, the properties a client needs to be correct over both, and the local broker's tuning."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from cryptoctl.kafka.clients import consumer_config, local_broker, producer_config
from cryptoctl.settings import Settings, load_settings


def plain(tmp_path: Path, table: dict[str, str]) -> Settings:
    return replace(load_settings({"home": tmp_path}, environ={}), kafka_config=table)


def test_the_kafka_table_overrides_the_tuning_not_what_a_client_needs(tmp_path: Path) -> None:
    s = plain(tmp_path, {"linger.ms": "5", "fetch.wait.max.ms": "250", "acks": "1",
                         "enable.auto.commit": "true", "security.protocol": "SASL_SSL"})
    p = producer_config(s)
    c = consumer_config(s, "g")
    assert (p["linger.ms"], p["security.protocol"]) == ("5", "SASL_SSL")
    assert (p["acks"], p["enable.idempotence"]) == ("all", True)  # exactly-once needs them
    assert (c["fetch.wait.max.ms"], c["security.protocol"]) == ("250", "SASL_SSL")
    assert (c["enable.auto.commit"], c["group.id"]) == (False, "g")  # offsets live in PG
    assert producer_config(s, **{"linger.ms": 1})["linger.ms"] == 1  # the caller's, last


def test_without_a_table_the_tuning_is_cryptoctls(tmp_path: Path) -> None:
    s = plain(tmp_path, {})
    assert producer_config(s)["linger.ms"] == 20  # no local stack running in tmp_path
    assert consumer_config(s, "g")["fetch.wait.max.ms"] == 100
    assert not local_broker(s)


def test_the_local_stacks_broker_gets_fewer_larger_batches(settings: Settings) -> None:
    """On the local stack (Tansu) a producer lingers longer; pointed elsewhere it does not,
    and the [kafka] table still wins."""
    assert local_broker(settings)
    assert producer_config(settings)["linger.ms"] == 100
    elsewhere = replace(settings, kafka_bootstrap="127.0.0.1:1")
    assert not local_broker(elsewhere)
    assert producer_config(elsewhere)["linger.ms"] == 20
    told = replace(settings, kafka_config={"linger.ms": "7"})
    assert producer_config(told)["linger.ms"] == "7"
