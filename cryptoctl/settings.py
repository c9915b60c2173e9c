"""Settings, resolved once into a frozen object: flag > environment > config file > default.

Every service endpoint resolves here (its default and variables are in
:mod:`cryptoctl.endpoints`), so ``cryptoctl up`` starts its servers on exactly the
addresses that ``produce``/``aggregate``/``candles`` will use.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptoctl.endpoints import KAFKA, POSTGRES, REDIS, SERVICES
from cryptoctl.errors import ConfigError
from cryptoctl.times import parse_duration_ms

DEFAULT_KAFKA_BOOTSTRAP = KAFKA.default
DEFAULT_DATABASE_URL = POSTGRES.default
DEFAULT_REDIS_URL = REDIS.default
DEFAULT_TOPIC = "crypto-prices"
# The exchanges' own addresses, as their wire modules have them (cryptoctl.exchanges.*;
# written out here so resolving settings imports no HTTP client; a test keeps them equal).
EXCHANGE_URLS = {
    "binance": ("wss://stream.binance.com:9443", "https://api.binance.com"),
    "coinbase": ("wss://ws-feed.exchange.coinbase.com", "https://api.exchange.coinbase.com"),
    "kraken": ("wss://ws.kraken.com/v2", "https://api.kraken.com"),
}


def _xdg(var: str, fallback: str) -> Path:
    return Path(os.environ.get(var) or Path.home() / fallback)


def default_home() -> Path:
    return _xdg("XDG_DATA_HOME", ".local/share") / "cryptoctl"


def default_config_path() -> Path:
    return _xdg("XDG_CONFIG_HOME", ".config") / "cryptoctl" / "config.toml"


@dataclass(frozen=True)
class Settings:
    home: Path = field(default_factory=default_home)
    kafka_bootstrap: str = DEFAULT_KAFKA_BOOTSTRAP
    database_url: str = DEFAULT_DATABASE_URL
    db_schema: str = "public"
    redis_url: str = DEFAULT_REDIS_URL
    redis_prefix: str = "cryptoctl:"
    topic: str = DEFAULT_TOPIC
    dlq_topic: str = ""  # empty: "<topic>.dlq"
    partitions: int = 6
    group: str = "cryptoctl-aggregator"
    coingecko_api_key: str = ""
    coingecko_api_url: str = ""  # empty: chosen by the key's plan
    binance_ws_url: str = EXCHANGE_URLS["binance"][0]
    binance_rest_url: str = EXCHANGE_URLS["binance"][1]
    coinbase_ws_url: str = EXCHANGE_URLS["coinbase"][0]
    coinbase_rest_url: str = EXCHANGE_URLS["coinbase"][1]
    kraken_ws_url: str = EXCHANGE_URLS["kraken"][0]
    kraken_rest_url: str = EXCHANGE_URLS["kraken"][1]
    # Alert delivery (cryptoctl.alerts.delivery): tries per event before it is marked
    # failed, and the first wait between tries (doubled each time, capped, with jitter).
    alert_attempts: int = 8
    alert_backoff: str = "5s"
    # Extra librdkafka properties for a real cluster (security.protocol, sasl.*, ...),
    # from the config file's [kafka] table.
    kafka_config: Mapping[str, str] = field(default_factory=dict)
    # Prometheus metrics of produce / aggregate / run: served only when a port is given;
    # on loopback unless another address is.
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    # Where each value came from: "default", "file", "env" or "flag" (for `cryptoctl config`).
    origins: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def dlq(self) -> str:
        return self.dlq_topic or f"{self.topic}.dlq"

    @property
    def alert_backoff_ms(self) -> int:
        return parse_duration_ms(self.alert_backoff)

    def with_overrides(self, **values: Any) -> Settings:
        """A copy with some values replaced (flags resolved after the first load)."""
        given = {k: v for k, v in values.items() if v is not None}
        origins = dict(self.origins) | dict.fromkeys(given, "flag")
        return replace(self, **_coerce_all(given), origins=origins)


# name -> environment variables, first set wins
ENV_VARS: dict[str, tuple[str, ...]] = {
    "home": ("CRYPTOCTL_HOME",),
    **{e.setting: e.env for e in SERVICES},
    "db_schema": ("CRYPTOCTL_DB_SCHEMA",),
    "redis_prefix": ("CRYPTOCTL_REDIS_PREFIX",),
    "topic": ("CRYPTOCTL_TOPIC",),
    "dlq_topic": ("CRYPTOCTL_DLQ_TOPIC",),
    "partitions": ("CRYPTOCTL_PARTITIONS",),
    "group": ("CRYPTOCTL_GROUP",),
    "alert_attempts": ("CRYPTOCTL_ALERT_ATTEMPTS",),
    "alert_backoff": ("CRYPTOCTL_ALERT_BACKOFF",),
    "coingecko_api_key": ("CRYPTOCTL_COINGECKO_API_KEY", "COINGECKO_API_KEY"),
    "coingecko_api_url": ("CRYPTOCTL_COINGECKO_API_URL",),
    "metrics_port": ("CRYPTOCTL_METRICS_PORT",),
    "metrics_host": ("CRYPTOCTL_METRICS_HOST",),
    **{
        f"{name}_{kind}_url": (f"CRYPTOCTL_{name.upper()}_{kind.upper()}_URL",)
        for name in EXCHANGE_URLS
        for kind in ("ws", "rest")
    },
}

_SECRET_FIELDS = {"coingecko_api_key"}


def _to_int(name: str) -> Callable[[Any], int]:
    def conv(value: Any) -> int:
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"setting {name} must be a whole number, got {value!r}") from None
        if number < 1:
            raise ConfigError(f"setting {name} must be at least 1, got {number}")
        return number

    return conv


def _port(name: str) -> Callable[[Any], int]:
    at_least_one = _to_int(name)

    def conv(value: Any) -> int:
        number = at_least_one(value)
        if number > 65535:
            raise ConfigError(f"setting {name} must be a TCP port (1-65535), got {number}")
        return number

    return conv


def _redis_url(value: Any) -> str:
    url = str(value)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError as exc:
        raise ConfigError(
            f"invalid Redis URL {redact(url)!r}: {exc}",
            hint="use redis://host:port/db, e.g. redis://localhost:6379/0",
        ) from None
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(
            f"invalid Redis URL {redact(url)!r}: the scheme must be redis://, rediss:// or unix://"
        )
    return url


def _positive_duration(name: str) -> Callable[[Any], str]:
    def conv(value: Any) -> str:
        text = str(value)
        try:
            ms = parse_duration_ms(text)
        except ValueError as exc:
            raise ConfigError(f"setting {name}: {exc}") from None
        if ms <= 0:
            raise ConfigError(f"setting {name} must be longer than zero, e.g. 5s")
        return text

    return conv


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "home": lambda v: Path(v).expanduser(),
    "redis_url": _redis_url,
    "partitions": _to_int("partitions"),
    "alert_attempts": _to_int("alert_attempts"),
    "alert_backoff": _positive_duration("alert_backoff"),
    "metrics_port": _port("metrics_port"),
    "kafka_config": lambda v: {str(k): str(x) for k, x in dict(v).items()},
}


def _coerce_all(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _CONVERTERS.get(k, str)(v) for k, v in values.items()}


def _read_config_file(path: Path, explicit: bool) -> dict[str, Any]:
    if not path.exists():
        if explicit:
            raise ConfigError(f"config file {path} does not exist")
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    known = {f.name for f in fields(Settings)} - {"origins"}
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        if name == "kafka" and isinstance(value, dict):
            flat["kafka_config"] = value
        elif name in known:
            flat[name] = value
        else:
            raise ConfigError(f"unknown setting {key!r} in config file {path}")
    return flat


def load_settings(
    flags: Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    config_path: Path | None = None,
) -> Settings:
    """Resolve settings once: flag > environment > config file > default."""
    env = os.environ if environ is None else environ
    explicit = config_path is not None or bool(env.get("CRYPTOCTL_CONFIG"))
    path = config_path or Path(env.get("CRYPTOCTL_CONFIG") or default_config_path())
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for name, value in _read_config_file(path, explicit).items():
        values[name], origins[name] = value, "file"
    for name, names in ENV_VARS.items():
        for var in names:
            if env.get(var):
                values[name], origins[name] = env[var], "env"
                break
    for name, value in (flags or {}).items():
        if value is not None:
            values[name], origins[name] = value, "flag"
    settings = Settings(**_coerce_all(values))
    return replace(settings, origins=origins)


# What a password looks like in text: a URL's user:password@, a URL query's password=...,
# a libpq conninfo's password=... (quoted or bare).
_URL_PASSWORD = re.compile(r"(://[^/\s:@]*:)[^\s]*@")  # to the last @: passwords may hold @ and /
_KEY_PASSWORD = re.compile(
    r"""(?i)(\b[\w.-]*pass(?:word|wd)?\s*=\s*)('(?:[^'\\]|\\.)*'?|"(?:[^"\\]|\\.)*"?|[^\s&'"]*)"""
)


def redact(text: str) -> str:
    """Mask every password in text: ``postgresql://u:***@host/db``, ``?password=***``,
    ``host=h password=***``; other text unchanged. Works on malformed URLs too."""
    return _KEY_PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"\1***@", text))


def display_settings(settings: Settings) -> dict[str, Any]:
    """The resolved settings as plain values, passwords and keys masked."""
    out: dict[str, Any] = {}
    for f in fields(Settings):
        if f.name == "origins":
            continue
        value = getattr(settings, f.name)
        if f.name in _SECRET_FIELDS and value:
            value = "***"
        elif isinstance(value, str):
            value = redact(value)
        elif isinstance(value, Path):
            value = str(value)
        elif isinstance(value, Mapping):
            value = {k: ("***" if "password" in k or "secret" in k else v) for k, v in value.items()}
        out[f.name] = value
    out["dlq_topic"] = settings.dlq
    return out


def host_port(address: str, default_port: int) -> tuple[str, int]:
    """``"localhost:9092"`` -> ("localhost", 9092); first address of a comma list."""
    first = address.split(",")[0].strip()
    if "://" in first:
        first = first.split("://", 1)[1]
    host, _, port = first.rpartition(":")
    if not host:
        return first or "localhost", default_port
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        raise ConfigError(f"invalid address {address!r}: expected host:port") from None
