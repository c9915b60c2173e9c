"""Which source to produce from, with its options, and the one builder of a Source.

`produce` fills a :class:`SourceSpec` from its flags; `run` from its flags after
:func:`choose_source` (Binance trades when Binance answers, else the synthetic market). Both build
the source with :func:`build_source`, where every usage error is raised before producing.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptoctl.errors import UsageError

if TYPE_CHECKING:
    from cryptoctl.settings import Settings
    from cryptoctl.sources.base import Source
    from cryptoctl.sources.coingecko import Reachability


class SourceKind(enum.StrEnum):
    coingecko = "coingecko"
    synthetic = "synthetic"
    replay = "replay"
    binance = "binance"
    coinbase = "coinbase"
    kraken = "kraken"

    @property
    def is_exchange(self) -> bool:
        return self in EXCHANGE_KINDS


@dataclass(frozen=True)
class SourceSpec:
    """A source and the options given for it; None (False, ()) means not given."""

    kind: SourceKind
    symbols: tuple[str, ...] | None = None
    interval_ms: int | None = None
    api_key: str | None = None
    key_type: str | None = None  # "demo" | "pro"
    api_url: str | None = None
    coin_ids: tuple[str, ...] = ()  # SYMBOL=coingecko-id overrides
    max_rpm: int | None = None
    rate: float | None = None
    seed: int | None = None
    start: str | None = None
    out_of_order: float | None = None
    max_delay_ms: int | None = None
    file: Path | None = None
    speed: float | None = None
    strict: bool = False
    quote: str | None = None
    since: str | None = None  # a time: a duration back, epoch ms or ISO-8601
    ws_url: str | None = None
    rest_url: str | None = None

    def resolved(self) -> SourceSpec:
        """Defaults filled in for this kind. A flag given for another source is a usage
        error, not silently ignored (OWNERS says whose each option is)."""
        filled: dict[str, Any] = {}
        for name, owner in OWNERS.items():
            if _given(getattr(self, name)):
                if self.kind not in owner.kinds:
                    whose = " or ".join(kind.value for kind in owner.kinds)
                    raise UsageError(
                        f"{owner.flag} is for --source {whose}",
                        hint=f"drop it or use --source {owner.kinds[0].value}",
                    )
            elif self.kind in owner.kinds:
                filled[name] = owner.default
        return replace(self, **filled)

    def own_options_only(self) -> SourceSpec:
        """The options of other sources dropped (`run`: its flags hold every source's
        defaults, and the source is chosen after parsing)."""
        foreign = {
            name: _NOT_GIVEN[name]
            for name, owner in OWNERS.items()
            if self.kind not in owner.kinds
        }
        return replace(self, **foreign)


@dataclass(frozen=True)
class Owner:
    kinds: tuple[SourceKind, ...]
    default: Any  # when not given
    shown: str  # the default as --help shows it
    flag: str


EXCHANGE_KINDS = (SourceKind.binance, SourceKind.coinbase, SourceKind.kraken)
_POLLED = (SourceKind.coingecko, SourceKind.synthetic)
_CG, _SYN, _REPLAY = (SourceKind.coingecko,), (SourceKind.synthetic,), (SourceKind.replay,)
_EX = EXCHANGE_KINDS

OWNERS: dict[str, Owner] = {
    "symbols": Owner(_POLLED + _EX, ("BTC", "ETH"), "BTC,ETH", "--symbols"),
    "interval_ms": Owner(_CG, 10_000, "10s", "--interval"),
    "api_key": Owner(_CG, None, "", "--api-key"),
    "key_type": Owner(_CG, None, "", "--key-type"),
    "api_url": Owner(_CG, None, "", "--api-url"),
    "coin_ids": Owner(_CG, (), "", "--coin-id"),
    "max_rpm": Owner(_CG, None, "", "--max-requests-per-minute"),
    "rate": Owner(_SYN, 10.0, "10", "--rate"),
    "seed": Owner(_SYN, None, "", "--seed"),
    "start": Owner(_SYN, None, "", "--start"),
    "out_of_order": Owner(_SYN, 0.0, "0", "--out-of-order"),
    "max_delay_ms": Owner(_SYN, 5_000, "5s", "--max-delay"),
    "file": Owner(_REPLAY, None, "", "--file"),
    "speed": Owner(_REPLAY, 1.0, "1", "--speed"),
    "strict": Owner(_REPLAY, False, "", "--strict"),
    "quote": Owner(_EX, None, "USDT on binance, USD on coinbase and kraken", "--quote"),
    "since": Owner(_EX, None, "", "--since"),
    "ws_url": Owner(_EX, None, "", "--ws-url"),
    "rest_url": Owner(_EX, None, "", "--rest-url"),
}
_NOT_GIVEN: dict[str, Any] = {f.name: f.default for f in fields(SourceSpec) if f.name in OWNERS}


def _given(value: Any) -> bool:
    return value is not None and value is not False and value != ()  # 0 and 0.0 are given


def default_shown(name: str) -> str:
    """``[default: 10s]``: a per-source option's default for its --help text."""
    return f"[default: {OWNERS[name].shown}]"


def build_source(settings: Settings, spec: SourceSpec) -> Source:
    """The source the spec asks for; every usage error is raised here, before producing."""
    spec = spec.resolved()
    if spec.kind.is_exchange:
        return _exchange(settings, spec)
    if spec.kind is SourceKind.replay:
        return _replay(spec)
    if spec.kind is SourceKind.synthetic:
        return _synthetic(spec)
    return _coingecko(settings, spec)


def _replay(spec: SourceSpec) -> Source:
    from cryptoctl.sources.replay import ReplayConfig, ReplaySource

    if spec.file is None:
        raise UsageError("--source replay needs --file", hint="e.g. --file ticks.csv")
    assert spec.speed is not None  # resolved
    return ReplaySource(ReplayConfig(spec.file, speed=spec.speed, strict=spec.strict))


def _synthetic(spec: SourceSpec) -> Source:
    from cryptoctl.sources.base import now_ms
    from cryptoctl.sources.synthetic import SyntheticConfig, SyntheticSource
    from cryptoctl.times import parse_time_ms

    start_ms = None
    if spec.start is not None:
        try:
            start_ms = parse_time_ms(spec.start, now_ms=now_ms())
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    assert spec.symbols is not None and spec.rate is not None  # resolved
    assert spec.out_of_order is not None and spec.max_delay_ms is not None
    config = SyntheticConfig(
        list(spec.symbols),
        rate=spec.rate,
        seed=spec.seed,
        start_ms=start_ms,
        out_of_order=spec.out_of_order,
        max_delay_ms=spec.max_delay_ms,
    )
    return SyntheticSource(config)


def _exchange(settings: Settings, spec: SourceSpec) -> Source:
    from cryptoctl.sources.base import now_ms
    from cryptoctl.sources.exchange import ExchangeConfig, open_exchange_source
    from cryptoctl.times import parse_time_ms

    since_ms = None
    if spec.since is not None:
        try:
            since_ms = parse_time_ms(spec.since, now_ms=now_ms())
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    name = spec.kind.value
    assert spec.symbols is not None  # resolved
    config = ExchangeConfig(
        name,
        tuple(spec.symbols),
        quote=spec.quote,
        since_ms=since_ms,
        ws_url=spec.ws_url or getattr(settings, f"{name}_ws_url"),
        rest_url=spec.rest_url or getattr(settings, f"{name}_rest_url"),
    )
    return open_exchange_source(settings, config)


def _coingecko(settings: Settings, spec: SourceSpec) -> Source:
    from cryptoctl.sources.coingecko import CoinGeckoConfig, CoinGeckoSource
    from cryptoctl.sources.coins import parse_coin_ids, resolve_coin_ids

    assert spec.symbols is not None and spec.interval_ms is not None  # resolved
    ids = resolve_coin_ids(spec.symbols, parse_coin_ids(spec.coin_ids))
    config = CoinGeckoConfig(
        ids,
        interval_s=spec.interval_ms / 1000,
        api_key=spec.api_key or settings.coingecko_api_key,
        key_type=spec.key_type,
        api_url=spec.api_url or settings.coingecko_api_url,
        max_requests_per_minute=spec.max_rpm,
    )
    return CoinGeckoSource(config)


# --- `run`: Binance trades when Binance answers, the synthetic market otherwise ----------

# One probe, not a chain: offline, Binance -> CoinGecko -> synthetic would wait for two
# timeouts before the first tick, and CoinGecko (a poll every 10 s) is not a trade feed.
DEFAULT_RUN_SOURCE = SourceKind.binance
PROBE_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class SourceChoice:
    name: str  # a SourceKind value
    note: str = ""  # said to the user when the default was wanted but is not used

    @property
    def kind(self) -> SourceKind:
        return SourceKind(self.name)

    @property
    def fell_back(self) -> bool:
        return bool(self.note)


def binance_reachable(rest_url: str, *, timeout_s: float = PROBE_TIMEOUT_S) -> Reachability:
    """One ``GET /api/v3/ping`` (weight 1) with a short timeout: can Binance be used now?"""
    import httpx

    from cryptoctl.sources.coingecko import Reachability

    base = rest_url.rstrip("/")
    try:
        response = httpx.get(f"{base}/api/v3/ping", timeout=timeout_s)
    except httpx.HTTPError as exc:
        return Reachability(False, f"cannot reach {base}: {exc.__class__.__name__}")
    if response.status_code == 200:
        return Reachability(True, f"{base} answered")
    return Reachability(False, f"{base} answered HTTP {response.status_code}{_why(response)}")


def _why(response: Any) -> str:
    if response.status_code == 451:  # Binance's answer in the places it does not serve
        return ": not available from this location"
    try:
        message = response.json().get("msg")
    except (ValueError, AttributeError):
        return ""
    return f": {str(message)[:80]}" if message else ""


def choose_source(
    settings: Settings,
    requested: str | None,
    probe: Callable[[str], Any] | None = None,
    *,
    rest_url: str | None = None,
) -> SourceChoice:
    """An explicit --source is used as given (no probe); otherwise Binance if its REST API
    (``rest_url``, else the settings') answers a ping, else the synthetic market."""
    if requested is not None:
        return SourceChoice(requested)
    result = (probe or binance_reachable)(rest_url or settings.binance_rest_url)
    if result.ok:
        return SourceChoice(DEFAULT_RUN_SOURCE.value)
    return SourceChoice(
        SourceKind.synthetic.value,
        f"Binance cannot be reached ({result.detail}); using the synthetic market instead. "
        "Use --source binance to insist, --source coinbase or kraken for another exchange, "
        "or --source synthetic to skip this check.",
    )


def run_spec(choice: SourceChoice, symbols: tuple[str, ...], **given: Any) -> SourceSpec:
    """`run`'s flags as the chosen source's spec. Its --interval and --rate always hold a
    value, so only the chosen source's are kept; the exchange flags (--quote, --ws-url,
    --rest-url) are dropped on a fallback (the note said so) and otherwise checked by
    :func:`build_source`, like produce's (--quote with --source synthetic: a usage error)."""
    exchange = {name: given.pop(name, None) for name in ("quote", "ws_url", "rest_url")}
    spec = SourceSpec(choice.kind, symbols=symbols, **given).own_options_only()
    return spec if choice.fell_back else replace(spec, **exchange)


def run_quote(spec: SourceSpec) -> str:
    """The quote of every market of a run of this spec (the exchange's default, or USD)."""
    if not spec.kind.is_exchange:
        return "USD"
    from cryptoctl.sources.exchange import DEFAULT_QUOTE

    return (spec.quote or DEFAULT_QUOTE[spec.kind.value]).upper()
