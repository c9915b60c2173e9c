from pathlib import Path

import pytest

from cryptoctl.errors import ConfigError
from cryptoctl.settings import display_settings, host_port, load_settings, redact


def test_defaults_when_nothing_is_set(tmp_path: Path) -> None:
    s = load_settings(environ={}, config_path=None)
    assert s.kafka_bootstrap == "localhost:9092"
    assert s.database_url == "postgresql://cryptoctl:cryptoctl@localhost:5432/cryptoctl"
    assert s.redis_url == "redis://localhost:6379/0"
    assert s.topic == "crypto-prices"
    assert s.dlq == "crypto-prices.dlq"
    assert s.partitions == 6


def test_precedence_flag_over_env_over_file_over_default(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('topic = "from-file"\ngroup = "file-group"\nredis_prefix = "file:"\n')
    env = {"CRYPTOCTL_TOPIC": "from-env", "CRYPTOCTL_GROUP": "env-group"}
    s = load_settings({"topic": "from-flag"}, environ=env, config_path=cfg)
    assert s.topic == "from-flag"
    assert s.group == "env-group"
    assert s.redis_prefix == "file:"
    assert s.db_schema == "public"
    assert s.origins == {
        "topic": "flag", "group": "env", "redis_prefix": "file",
    }


def test_database_url_falls_back_to_standard_variable() -> None:
    s = load_settings(environ={"DATABASE_URL": "postgresql://a@h/db"})
    assert s.database_url == "postgresql://a@h/db"
    s = load_settings(environ={"DATABASE_URL": "postgresql://a@h/db",
                               "CRYPTOCTL_DATABASE_URL": "postgresql://b@h/db"})
    assert s.database_url == "postgresql://b@h/db"


def test_config_file_kafka_table_goes_to_librdkafka(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[kafka]\n"security.protocol" = "SASL_SSL"\n"sasl.password" = "s3cret"\n')
    s = load_settings(environ={}, config_path=cfg)
    assert s.kafka_config == {"security.protocol": "SASL_SSL", "sasl.password": "s3cret"}
    shown = display_settings(s)
    assert shown["kafka_config"]["sasl.password"] == "***"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('nonsense = 1\n', "unknown setting 'nonsense'"),
        ('partitions = "x"\n', "partitions must be a whole number"),
        ('partitions = 0\n', "partitions must be at least 1"),
        ("topic = \n", "cannot read config file"),
    ],
)
def test_bad_config_file_is_a_config_error(tmp_path: Path, content: str, message: str) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_settings(environ={}, config_path=cfg)


def test_explicit_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(environ={"CRYPTOCTL_CONFIG": str(tmp_path / "none.toml")})


def test_passwords_are_masked() -> None:
    assert redact("postgresql://u:pw@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert redact("redis://:secret@h:6379/0") == "redis://:***@h:6379/0"
    assert redact("redis://h:6379/0") == "redis://h:6379/0"
    s = load_settings({"coingecko_api_key": "CG-123"}, environ={})
    shown = display_settings(s)
    assert "cryptoctl:***@" in shown["database_url"]
    assert shown["coingecko_api_key"] == "***"


@pytest.mark.parametrize(
    "text",
    [
        "host=db password=hunter2 dbname=x",
        "host=db password = hunter2",
        "host=db password='hun ter2' dbname=x",
        "host=db sslpassword=hunter2",
        "postgresql://u@db/x?password=hunter2&sslmode=require",
        "postgresql://u@db/x?sslmode=require&PASSWORD=hunter2",
        "postgresql://u:hunter2@[bad/x",
        "postgresql://u:hun@ter2@db/x",
        "error near 'postgresql://u:hunter2@db:notaport/x' in the text",
        "postgresql://u:hun/ter2@db/x",
        "PGPASSWORD=hunter2 psql",
        "db_password=hunter2",
        'host=db password="hun ter2" dbname=x',
    ],
)
def test_every_form_of_password_is_masked(text: str) -> None:
    shown = redact(text)
    assert "hunter2" not in shown and "ter2" not in shown, shown
    assert "***" in shown


def test_conninfo_passwords_are_masked_in_config(tmp_path: Path) -> None:
    for url in ("host=db password=hunter2 dbname=x", "postgresql://u@db/x?password=hunter2"):
        s = load_settings({"database_url": url}, environ={})
        assert "hunter2" not in str(display_settings(s))


def test_host_port() -> None:
    assert host_port("localhost:9092", 1) == ("localhost", 9092)
    assert host_port("a:1,b:2", 1) == ("a", 1)
    assert host_port("kafka", 9092) == ("kafka", 9092)
    assert host_port("[::1]:9093", 1) == ("::1", 9093)
    with pytest.raises(ConfigError):
        host_port("h:notaport", 1)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://localhost:port/0", "invalid Redis URL"),
        ("redis://:secret@localhost:x/0", "invalid Redis URL"),
        ("http://localhost:6379/0", "scheme must be"),
    ],
)
def test_a_bad_redis_url_is_a_config_error(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load_settings({"redis_url": url}, environ={})
    assert "secret" not in str(info.value)


def test_a_schema_name_with_a_trailing_newline_is_refused() -> None:
    from cryptoctl.db.connection import schema_ident

    with pytest.raises(ConfigError, match="invalid database schema name"):
        schema_ident("public\n")
    assert schema_ident("public") == "public"
