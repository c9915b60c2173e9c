"""Where each service is and how a user points cryptoctl elsewhere, written once.

Settings take their defaults and environment variables from here; error messages, the
local runtime and the compose checks name the flag and variable from here too.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Endpoint:
    service: str  # as messages name it: "Kafka"
    key: str  # the local runtime's name for its server: "kafka"
    setting: str  # the Settings field (and config file key)
    flag: str  # the global command-line flag
    env: tuple[str, ...]  # environment variables, the first one set wins
    default: str

    @property
    def how_to_set(self) -> str:
        """``--kafka / CRYPTOCTL_KAFKA_BOOTSTRAP``: what a hint tells the user to set."""
        return f"{self.flag} / {self.env[0]}"

    @property
    def env_help(self) -> str:
        """``[env CRYPTOCTL_DATABASE_URL, DATABASE_URL]``, for --help texts."""
        return f"[env {', '.join(self.env)}]"


KAFKA = Endpoint(
    "Kafka", "kafka", "kafka_bootstrap", "--kafka", ("CRYPTOCTL_KAFKA_BOOTSTRAP",), "localhost:9092"
)
POSTGRES = Endpoint(
    "PostgreSQL",
    "postgres",
    "database_url",
    "--database-url",
    ("CRYPTOCTL_DATABASE_URL", "DATABASE_URL"),
    "postgresql://cryptoctl:cryptoctl@localhost:5432/cryptoctl",
)
REDIS = Endpoint(
    "Redis", "redis", "redis_url", "--redis-url", ("CRYPTOCTL_REDIS_URL",), "redis://localhost:6379/0"
)
SERVICES = (KAFKA, POSTGRES, REDIS)


def by_service(service: str) -> Endpoint | None:
    """The endpoint a message's service name (``"Redis"``) or a server key (``"redis"``)
    stands for."""
    return next((e for e in SERVICES if service in (e.service, e.key)), None)
