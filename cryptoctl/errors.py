"""The one error hierarchy of cryptoctl.

Core code raises these; the CLI turns them into one red line on stderr and the exit code
in :class:`ExitCode` (``cryptoctl.cli.app``: ``CryptoctlGroup.invoke`` and ``main``).
One class per condition, each with one code; raise the class, never the base. Messages
must never contain a password: build them from :func:`cryptoctl.settings.redact` when they
name an endpoint.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Documented exit codes (docs/troubleshooting.md lists them)."""

    OK = 0
    ERROR = 1  # ticks produce could not deliver, or an internal error (a bug)
    USAGE = 2  # bad flag, bad value, bad config file
    SERVICE_UNAVAILABLE = 3  # Kafka, PostgreSQL or Redis cannot be reached
    STACK = 4  # the local stack could not be started or stopped
    DATA = 5  # input data rejected in --strict mode, or a source gave up
    DATABASE = 6  # PostgreSQL answered but refused a statement (schema, query)
    TOPIC_MISSING = 7  # Kafka answered but the topic does not exist
    DIFFERENCES = 8  # verify: a minute of ours is not the exchange's (or is incomplete)
    PIPELINE_STALLED = 9  # status: a partition has messages waiting and no recent commit
    INTERRUPTED = 130  # stopped by a second Ctrl-C before finishing cleanly


class CryptoctlError(Exception):
    """Base of every error cryptoctl reports to a user."""

    exit_code: ExitCode = ExitCode.ERROR

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class InternalError(CryptoctlError):
    """Something cryptoctl does not expect failed: a bug. The message is redacted."""


class DeliveryFailed(CryptoctlError):
    """Ticks were produced but the broker never acknowledged them (produce, at the end)."""


class UsageError(CryptoctlError):
    """A bad flag, value or command line; the message shows what is expected."""

    exit_code = ExitCode.USAGE


class ConfigError(UsageError):
    """A setting (flag, environment variable or config file entry) is invalid."""


class MetricsPortUnavailable(UsageError):
    """The metrics server cannot listen where it was told (--metrics-port/--metrics-host):
    the port is taken (another process, another `aggregate` on the same port) or the
    address is not this machine's."""

    def __init__(self, host: str, port: int, detail: str, *, in_use: bool) -> None:
        super().__init__(
            f"cannot serve metrics on {host}:{port}: {detail}",
            hint="give each process its own --metrics-port (or CRYPTOCTL_METRICS_PORT), "
            "e.g. 9464, 9465, ..." if in_use else "set --metrics-host (or "
            "CRYPTOCTL_METRICS_HOST) to an address of this machine, e.g. 127.0.0.1 or 0.0.0.0",
        )
        self.host = host
        self.port = port


class ServiceUnavailable(CryptoctlError):
    """A service cannot be reached. Names the service, the address and how to start it."""

    exit_code = ExitCode.SERVICE_UNAVAILABLE

    def __init__(self, service: str, address: str, detail: str = "", *, hint: str | None = None):
        what = f"{service} is not reachable at {address}"
        if detail:
            what += f": {detail}"
        from cryptoctl.endpoints import by_service

        endpoint = by_service(service)
        default_hint = "start the local stack with `cryptoctl up`" + (
            f", or set {endpoint.how_to_set} to yours" if endpoint else ""
        )
        super().__init__(what, hint=hint or default_hint)
        self.service = service
        self.address = address
        self.detail = detail


class TopicMissing(CryptoctlError):
    """Kafka answered, but the topic a command reads or writes does not exist.

    Neither a usage error nor an unreachable service: the broker is there, and `cryptoctl
    up` (or whoever runs the cluster) creates the topic. Every command says it the same way.
    """

    exit_code = ExitCode.TOPIC_MISSING

    def __init__(self, topic: str, bootstrap: str, *, hint: str | None = None) -> None:
        super().__init__(
            f"Kafka topic {topic!r} does not exist on {bootstrap}",
            hint=hint
            or "`cryptoctl up` creates it; on another cluster create it there, "
            "or set CRYPTOCTL_TOPIC (or --topic) to an existing one",
        )
        self.topic = topic
        self.bootstrap = bootstrap


class StackError(CryptoctlError):
    """The local (or docker) stack could not be started, stopped or inspected."""

    exit_code = ExitCode.STACK


class DataError(CryptoctlError):
    """Input data was rejected where the user asked for strictness."""

    exit_code = ExitCode.DATA


class DatabaseError(CryptoctlError):
    """PostgreSQL was reached but a statement failed. Names the database, never a password."""

    exit_code = ExitCode.DATABASE

    def __init__(self, address: str, doing: str, detail: str, *, hint: str | None = None):
        super().__init__(f"PostgreSQL at {address}: {doing} failed: {detail}", hint=hint)
        self.address = address
        self.doing = doing
        self.detail = detail


class PipelineStalled(CryptoctlError):
    """``status``: some partitions have messages waiting and nobody committed for a while
    (after its output). Names each pipeline and its stalled partitions."""

    exit_code = ExitCode.PIPELINE_STALLED

    def __init__(self, stalled: list[tuple[str, str, list[int], int]], after: str) -> None:
        found = "; ".join(
            f"{group} on {topic}: partition{'s' if len(parts) > 1 else ''} "
            f"{', '.join(map(str, parts))} ({lag:,} messages waiting)"
            for group, topic, parts, lag in stalled
        )
        super().__init__(
            f"pipeline stalled, no commit for {after} with messages waiting: {found}",
            hint="is `cryptoctl aggregate` running and able to reach PostgreSQL? "
            "see docs/operations.md, Reading `status`",
        )
        self.stalled = stalled


class InvalidTick(ValueError):
    """A message is not a valid tick. Not a CryptoctlError: it is routed, not reported."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --- exchanges (cryptoctl.exchanges.rest) --------------------------------------------


class UnknownMarket(UsageError):
    """An exchange has no market by that name: names the spelling that was tried."""

    def __init__(self, exchange: str, market: str, tried: str, *, hint: str | None = None) -> None:
        super().__init__(
            f"{exchange} has no market {market} (tried {tried})",
            hint=hint or "check the symbol and the quote asset (each exchange lists its own)",
        )
        self.exchange = exchange
        self.market = market
        self.tried = tried


class ExchangeBanned(CryptoctlError):
    """An exchange answered 418: this IP is banned (after 429s were ignored). Never retried:
    every request during a ban lengthens it."""

    exit_code = ExitCode.SERVICE_UNAVAILABLE

    def __init__(self, exchange: str, host: str, retry_after_s: float | None = None) -> None:
        until = f" for {retry_after_s:.0f} s" if retry_after_s is not None else ""
        super().__init__(
            f"{exchange} banned this IP address{until} (HTTP 418 from {host})",
            hint=f"stop every cryptoctl command that uses {exchange} until the ban ends; "
            "requests during a ban make it longer",
        )
        self.exchange = exchange
        self.host = host
        self.retry_after_s = retry_after_s


class ExchangeRestError(CryptoctlError):
    """An exchange's REST API failed us: names the exchange, the address and what happened.
    Raise a subclass; each says how it failed (``failed``) and what to do (``default_hint``)."""

    failed = ""  # between the address and the detail: " failed" or nothing
    default_hint: str | None = None

    def __init__(self, exchange: str, host: str, detail: str, *, hint: str | None = None) -> None:
        super().__init__(
            f"{exchange} REST API at {host}{self.failed}: {detail}", hint=hint or self.default_hint
        )
        self.exchange = exchange
        self.host = host
        self.detail = detail


class ExchangeUnavailable(ExchangeRestError):
    """An exchange's REST API could not be used: unreachable, or 5xx / 429 until the retry
    budget ran out."""

    exit_code = ExitCode.SERVICE_UNAVAILABLE
    failed = " failed"
    default_hint = "the exchange may be down or rate limiting this IP; try again later"


class ExchangeReplyError(ExchangeRestError):
    """An exchange answered, but not as documented (a 4xx, a body of another shape)."""

    exit_code = ExitCode.DATA


class CandlesDiffer(CryptoctlError):
    """``verify`` compared every minute and some are not match/empty (after its output)."""

    exit_code = ExitCode.DIFFERENCES

    def __init__(self, exchange: str, counts: dict[str, int]) -> None:
        found = ", ".join(f"{n} {status}" for status, n in counts.items() if n)
        super().__init__(
            f"our candles are not {exchange}'s in every minute: {found}",
            hint="the output names each minute; `incomplete` ones have a recorded feed gap",
        )
        self.exchange = exchange
        self.counts = counts
