"""The tick: the Kafka message value of ``crypto-prices`` (DESIGN.md, "The tick").

:class:`Tick` is the one shape a tick has from source to sink: the sources build it, the
producer encodes it, the aggregator applies and stores it. Its fields are in one order,
everywhere; the aggregator's hot path carries the same fields as a plain tuple
(:data:`TickRow`, what a Tick is underneath), unpacked by name.

``validate_tick`` is the one validation used by every source, by the producer before
anything reaches the topic, and by the consumers (aggregator, watch) on what they read.
:data:`ValidTick` marks a tick that passed it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple, NewType, cast

import orjson

from cryptoctl.errors import InvalidTick

SCHEMA_VERSION = 1
# Event times outside this range are rejected as nonsense (2009-01-01 .. 2100-01-01, ms).
MIN_TS_MS = 1_230_768_000_000
MAX_TS_MS = 4_102_444_800_000
# Prices and quantities are below this. A candle sums them (price_sum, and price * qty in
# pv_sum) in double precision: bounded inputs keep those sums finite, so every stored
# candle can be read back and printed as JSON. No real market comes near it (1e15 USD for
# one unit; a quadrillion units in one trade).
MAX_VALUE = 1e15
# Symbols and quotes: upper-case ASCII letters and digits (DESIGN.md), at most this long.
MAX_SYMBOL_LEN = 20
MAX_SOURCE_LEN = 64
MAX_TRADE_ID = (1 << 63) - 1  # fits PostgreSQL bigint
SIDES = ("buy", "sell")
_CORE = ("v", "symbol", "quote", "price", "qty", "ts", "source", "recv_ts", "trade_id", "side")


class Tick(NamedTuple):
    """One tick. Build it by keyword where speed does not matter; a Tick is a tuple, so
    hot loops unpack it (or a :data:`TickRow`) in this order."""

    symbol: str
    price: float
    ts: int  # event time, epoch ms
    source: str
    recv_ts: int  # when the producer received it, epoch ms
    quote: str = "USD"
    qty: float | None = None
    extra: dict[str, Any] | None = None  # fields beyond the core ones; None: there are none
    trade_id: int | str | None = None  # the exchange's trade id (exchange feeds)
    side: str | None = None  # the taker's side, "buy" or "sell", where the source knows it

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "v": SCHEMA_VERSION,
            "symbol": self.symbol,
            "quote": self.quote,
            "price": self.price,
            "qty": self.qty,
            "ts": self.ts,
            "source": self.source,
            "recv_ts": self.recv_ts,
        }
        if self.trade_id is not None:  # quotes stay as they were: no null trade fields
            out["trade_id"] = self.trade_id
            out["side"] = self.side
        if self.extra:
            out.update(self.extra)
        return out

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())


# Tick's fields as a plain tuple, in Tick's order: what the aggregator's hot path builds
# (a tuple costs a third of a NamedTuple to make). Every Tick is a TickRow.
TickRow = tuple[
    str, float, int, str, int, str, float | None, dict[str, Any] | None, int | str | None, str | None
]

# A tick that has passed the shared validation (validate_tick's rules). Sources yield only
# these and the Kafka sender takes only these, so each tick is checked exactly once, in
# the source, where a bad one can still be reported with its context (a line number, a
# coin id). mypy enforces the flow; at run time it is a plain Tick, at no cost.
ValidTick = NewType("ValidTick", Tick)

# The Tick constructor, typed as returning a ValidTick: for a source's hot loop that has
# checked the fields itself with `plain_fields_ok` (or knows them constant and valid, like
# its own name and the quote "USD"). Positional, in Tick's order: symbol, price, ts,
# source, recv_ts, quote, qty (and, for trades, extra, trade_id, side).
trusted_tick = cast(Callable[[str, float, int, str, int, str, float | None], ValidTick], Tick)


def _number(obj: dict[str, Any], name: str, *, positive: bool, nullable: bool) -> float | None:
    value = obj.get(name)
    if value is None:
        if nullable:
            return None
        raise InvalidTick(f"missing field {name!r}")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidTick(f"field {name!r} must be a number, got {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number):
        raise InvalidTick(f"field {name!r} must be finite, got {value!r}")
    if number >= MAX_VALUE:
        raise InvalidTick(f"field {name!r} must be < {MAX_VALUE:.0e}, got {value!r}")
    if positive and number <= 0:
        raise InvalidTick(f"field {name!r} must be > 0, got {value!r}")
    if not positive and number < 0:
        raise InvalidTick(f"field {name!r} must be >= 0, got {value!r}")
    return number


def _epoch_ms(obj: dict[str, Any], name: str) -> int:
    value = obj.get(name)
    if value is None:
        raise InvalidTick(f"missing field {name!r}")
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidTick(f"field {name!r} must be integer epoch milliseconds, got {value!r}")
    if not MIN_TS_MS <= value <= MAX_TS_MS:
        raise InvalidTick(f"field {name!r} is not a plausible epoch-ms time: {value}")
    return value


def _text(obj: dict[str, Any], name: str) -> str:
    value = obj.get(name)
    if value is None:
        raise InvalidTick(f"missing field {name!r}")
    if not isinstance(value, str) or not value.strip():
        raise InvalidTick(f"field {name!r} must be a non-empty string, got {value!r}")
    if len(value) > MAX_SOURCE_LEN or not value.isprintable():
        raise InvalidTick(
            f"field {name!r} must be at most {MAX_SOURCE_LEN} printable characters"
        )
    return value


def is_code(text: str) -> bool:
    """A symbol or quote as DESIGN.md has them: upper-case ASCII letters/digits, short."""
    return (
        0 < len(text) <= MAX_SYMBOL_LEN and text.isascii() and text.isalnum()
        and text == text.upper()
    )


def _has_nul(value: Any) -> bool:
    """Whether a JSON value holds a NUL anywhere (PostgreSQL text and jsonb cannot)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any("\x00" in k or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def validate_tick(obj: Any) -> Tick:
    """A decoded JSON object -> Tick, or InvalidTick with a one-line reason."""
    if not isinstance(obj, dict):
        raise InvalidTick(f"tick must be a JSON object, got {type(obj).__name__}")
    version = obj.get("v", SCHEMA_VERSION)
    if type(version) is not int or version != SCHEMA_VERSION:  # true == 1 in Python
        raise InvalidTick(f"unsupported tick schema version {version!r}")
    symbol = _text(obj, "symbol")
    if not is_code(symbol):
        raise InvalidTick(
            f"field 'symbol' must be 1-{MAX_SYMBOL_LEN} upper-case ASCII letters/digits,"
            f" got {symbol!r}"
        )
    price = _number(obj, "price", positive=True, nullable=False)
    qty = _number(obj, "qty", positive=False, nullable=True)
    ts = _epoch_ms(obj, "ts")
    recv_ts = _epoch_ms(obj, "recv_ts") if obj.get("recv_ts") is not None else ts
    quote = obj.get("quote")
    if quote is None:
        quote = "USD"
    # ASCII before upper-casing: "ß".upper() is "SS".
    if not isinstance(quote, str) or not quote.isascii() or not is_code(quote.upper()):
        raise InvalidTick(
            f"field 'quote' must be 1-{MAX_SYMBOL_LEN} ASCII letters/digits, got {quote!r}"
        )
    trade_id, side = _trade_fields(obj)
    extra = {k: v for k, v in obj.items() if k not in _CORE} or None
    if _has_nul(extra):
        raise InvalidTick("an extra field holds a NUL character (\\u0000)")
    return Tick(
        symbol=symbol,
        price=price,  # type: ignore[arg-type]
        ts=ts,
        source=_text(obj, "source"),
        recv_ts=recv_ts,
        quote=quote.upper(),
        qty=qty,
        extra=extra,
        trade_id=trade_id,
        side=side,
    )


def _trade_fields(obj: dict[str, Any]) -> tuple[int | str | None, str | None]:
    trade_id = obj.get("trade_id")
    if trade_id is not None:
        if type(trade_id) is int:
            if not 0 <= trade_id <= MAX_TRADE_ID:
                raise InvalidTick(f"field 'trade_id' must be 0..2^63-1, got {trade_id}")
        elif type(trade_id) is str:
            if not trade_id or len(trade_id) > MAX_SOURCE_LEN or not trade_id.isprintable():
                raise InvalidTick(
                    f"field 'trade_id' must be at most {MAX_SOURCE_LEN} printable characters"
                )
        else:
            raise InvalidTick(
                f"field 'trade_id' must be an integer or a string, got {type(trade_id).__name__}"
            )
    side = obj.get("side")
    if side is not None and side not in SIDES:
        raise InvalidTick(f"field 'side' must be 'buy', 'sell' or null, got {side!r}")
    return trade_id, side


def checked_tick(obj: dict[str, Any]) -> ValidTick:
    """A tick dict -> ValidTick through the shared validation, or InvalidTick.

    The cheap check answers for plainly valid ticks; anything else goes to validate_tick,
    so the verdict is always validate_tick's.
    """
    row = fast_tick_fields(obj)
    if row is None:
        return ValidTick(validate_tick(obj))
    return ValidTick(Tick._make(row))


def decode_tick(value: bytes | None) -> Tick:
    """A Kafka message value -> Tick, or InvalidTick."""
    if value is None:
        raise InvalidTick("empty message value")
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise InvalidTick(f"not valid JSON: {exc}") from None
    return validate_tick(obj)


# The hot path of the aggregator: the same rules as validate_tick, as cheap type checks.
# It only ever says "valid" for an object validate_tick accepts with the same values; for
# anything unusual it returns None and the caller asks validate_tick for the verdict.
# tests/aggregator/test_fast_tick.py checks both claims with Hypothesis.
_PLAIN_CORE_LEN = len(_CORE) - 2  # a quote: no trade_id/side keys
_TRADE_CORE_LEN = len(_CORE)  # a trade: both (with "trade_id" an int)
_MISSING = object()
# Symbols/quotes and sources found valid, for the fast path. Bounded: past the bound a new
# string is checked each time (a producer writing random symbols cannot grow them).
_CODES: set[str] = set()
_SOURCES: set[str] = set()
_REMEMBER_AT_MOST = 10_000


def _remember_code(text: str) -> bool:
    if not is_code(text):
        return False
    if len(_CODES) < _REMEMBER_AT_MOST:
        _CODES.add(text)
    return True


def _remember_source(text: str) -> bool:
    if not text.strip() or not text.isprintable() or len(text) > MAX_SOURCE_LEN:
        return False
    if len(_SOURCES) < _REMEMBER_AT_MOST:
        _SOURCES.add(text)
    return True


def fast_tick_fields(obj: Any) -> TickRow | None:
    """The :data:`TickRow` of a plainly valid tick (``extra`` None: it has none), or None:
    "ask validate_tick"."""
    if type(obj) is not dict:
        return None
    n = len(obj)
    if n != _PLAIN_CORE_LEN and n != _TRADE_CORE_LEN:
        return None
    v = obj.get("v")
    if v != 1 or type(v) is not int:
        return None
    symbol = obj.get("symbol")
    price: Any = obj.get("price")
    qty = obj.get("qty", _MISSING)
    ts = obj.get("ts")
    quote = obj.get("quote")
    source = obj.get("source")
    recv_ts = obj.get("recv_ts")
    tp = type(price)
    if tp is int:
        price = float(price)
    elif tp is not float:
        return None
    if not 0.0 < price < MAX_VALUE:
        return None
    if qty is not None:
        if qty is _MISSING:  # then some other key is there: not the plain shape
            return None
        tq = type(qty)
        if tq is int:
            qty = float(qty)
        elif tq is not float:
            return None
        if not 0.0 <= qty < MAX_VALUE:
            return None
    if type(ts) is not int or not MIN_TS_MS <= ts <= MAX_TS_MS:
        return None
    if type(recv_ts) is not int or not MIN_TS_MS <= recv_ts <= MAX_TS_MS:
        return None
    # Strings already found valid are remembered: a set lookup instead of four string
    # checks per field (the same few symbols, quotes and sources recur in every batch).
    if type(symbol) is not str or type(quote) is not str or type(source) is not str:
        return None
    if symbol not in _CODES and not _remember_code(symbol):
        return None
    if quote not in _CODES and not _remember_code(quote):
        return None
    if source not in _SOURCES and not _remember_source(source):
        return None
    if n == _PLAIN_CORE_LEN:
        return symbol, price, ts, source, recv_ts, quote, qty, None, None, None
    trade_id = obj.get("trade_id")
    if type(trade_id) is not int or not 0 <= trade_id <= MAX_TRADE_ID:
        return None
    side = obj.get("side", _MISSING)  # missing: some other key is there
    if side != "buy" and side != "sell" and side is not None:
        return None
    return symbol, price, ts, source, recv_ts, quote, qty, None, trade_id, side
