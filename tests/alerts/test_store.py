"""Alert rules and fired events in PostgreSQL (cryptoctl.alerts.store), and the
validation of a new rule."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cryptoctl.alerts import store
from cryptoctl.alerts.store import NewRule, UnknownAlert, UnknownAlertMarket, build_rule
from cryptoctl.db.connection import connect
from cryptoctl.errors import UsageError
from cryptoctl.settings import Settings
from cryptoctl.times import duration_text, parse_duration_ms
from tests.alerts.outbox import T0, add_rule_row, dt, fire

# --- validation (pure) -----------------------------------------------------------------


@given(st.integers(min_value=1, max_value=10**11))
def test_a_window_is_written_in_a_form_that_reads_back_to_it(ms: int) -> None:
    text = duration_text(ms)
    assert parse_duration_ms(text) == ms
    assert len(text) <= len(f"{ms}ms")


def test_window_text_is_the_short_form() -> None:
    assert [duration_text(m) for m in (600_000, 5_400_000, 1_500, 86_400_000)] == [
        "10m", "1h30m", "1500ms", "1d",
    ]  # fmt: skip


@given(st.floats(min_value=1e-6, max_value=1e6, allow_nan=False), st.booleans())
def test_a_percentage_with_or_without_the_sign_is_its_number(value: float, sign: bool) -> None:
    text = f"{value:f}".rstrip("0").rstrip(".") + ("%" if sign else "")
    if float(text.rstrip("%")) > 0:
        assert store.parse_percent(text) == float(text.rstrip("%"))


@pytest.mark.parametrize("text", ["0", "0%", "-5%", "5x", "%", "", "five", "5%%", "nan"])
def test_a_bad_percentage_is_a_usage_error_naming_the_form(text: str) -> None:
    with pytest.raises(UsageError) as info:
        store.parse_percent(text)
    assert info.value.hint == "e.g. --change 5%"


@pytest.mark.parametrize("text", ["0", "-1", "abc", "nan", "inf", ""])
def test_a_bad_threshold_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError, match="greater than zero"):
        build_rule("BTC", above=text)


def test_build_rule_takes_exactly_one_condition_and_within_only_with_change() -> None:
    assert build_rule("BTC", above="100000") == NewRule("BTC", "above", 100_000.0)
    assert build_rule("SOL", change="5%", within="10m", repeat=True) == NewRule(
        "SOL", "change", 5.0, 600_000, repeat=True
    )
    for kwargs in ({}, {"above": "1", "below": "2"}):
        with pytest.raises(UsageError, match="exactly one condition"):
            build_rule("BTC", **kwargs)
    assert build_rule("ETH", below="3000", source="Binance", quote="USDT").source == "binance"
    with pytest.raises(UsageError, match="needs --within"):
        build_rule("BTC", change="5%")
    with pytest.raises(UsageError, match="with --change only"):
        build_rule("BTC", above="1", within="10m")
    with pytest.raises(UsageError, match="invalid duration"):
        build_rule("BTC", change="5%", within="10q")


@pytest.mark.parametrize(
    "url", ["https://hooks.example.com/x", "http://127.0.0.1:8080/h", "json://127.0.0.1:9/x", "tgram://123456789:abcdefgh/12345"]
)
def test_webhooks_and_apprise_urls_are_accepted(url: str) -> None:
    assert store.check_notify_url(url) == url


@pytest.mark.parametrize("url", ["hooks.example.com/x", "ftp://x/y", "bogus://nothing", "https://", ""])
def test_a_bad_notify_url_is_a_usage_error(url: str) -> None:
    with pytest.raises(UsageError, match="no webhook or notification URL"):
        store.check_notify_url(url)


# --- rules in the database -------------------------------------------------------------


def _tick(settings: Settings, source: str, symbol: str, quote: str) -> None:
    with connect(settings, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO raw_price_data (time, symbol, quote, price, source) VALUES (%s, %s, %s, 1.5, %s)",
            (dt(T0), symbol, quote, source),
        )


def test_a_rule_needs_a_known_market(settings: Settings) -> None:
    with pytest.raises(UnknownAlertMarket, match="no market ZZZ from feedx in EUR"):
        store.add_rule(settings, NewRule("ZZZ", "above", 1.0, source="feedx", quote="EUR"))
    _tick(settings, "feedx", "ZZZ", "EUR")
    assert store.add_rule(settings, NewRule("ZZZ", "above", 1.0, source="FeedX")).symbol == "ZZZ"
    assert store.add_rule(settings, NewRule("ZZZ", "above", 1.0, quote="EUR")).id > 0
    with pytest.raises(UnknownAlertMarket):
        store.add_rule(settings, NewRule("ZZZ", "above", 1.0, quote="USD"))
    # a coin of the coin list needs no stored data, on any source cryptoctl has
    assert store.add_rule(settings, NewRule("BTC", "below", 90_000.0, source="binance")).id > 0
    with pytest.raises(UnknownAlertMarket):
        store.add_rule(settings, NewRule("BTC", "below", 90_000.0, source="feedy"))


def test_add_list_and_remove_rules_with_their_state(settings: Settings) -> None:
    one = store.add_rule(settings, NewRule("BTC", "above", 100_000.0, notify=("https://h.example/x",)))
    rep = store.add_rule(settings, NewRule("SOL", "change", 5.0, 600_000, "binance", "USDT", repeat=True))
    assert (one.state, one.fired, one.last_fired_ms, one.notify) == ("armed", 0, None, ("https://h.example/x",))
    assert rep.market == "binance SOL/USDT" and rep.describe() == "change 5% within 10m (repeat)"
    fire(settings, one.id, fired_ms=T0 + 1000)
    with connect(settings, autocommit=True) as conn:  # what the engine does to a one-shot rule
        conn.execute("UPDATE price_alerts SET active = false WHERE id = %s", (one.id,))
    fire(settings, rep.id, symbol="SOL", fired_ms=T0 + 2000)
    fire(settings, rep.id, symbol="SOL", fired_ms=T0 + 3000)
    # A one-shot rule of every market stays active: each market fires it once.
    anywhere = store.add_rule(settings, NewRule("ETH", "below", 3_000.0))
    fire(settings, anywhere.id, symbol="ETH", fired_ms=T0 + 4000)
    fire(settings, anywhere.id, symbol="ETH", source="coinbase", quote="USD", fired_ms=T0 + 5000)
    rules = {r.id: r for r in store.list_rules(settings)}
    assert [rules[one.id].state, rules[rep.id].state, rules[anywhere.id].state] == [
        "fired 1 time", "armed, fired 2 times", "armed, fired 2 markets"]
    assert rules[rep.id].last_fired_ms == T0 + 3000
    assert store.remove_rule(settings, one.id).id == one.id
    assert [r.id for r in store.list_rules(settings)] == [rep.id, anywhere.id]
    assert [e.alert_id for e in store.history(settings, symbols=["BTC"])] == [one.id]  # history stays
    with pytest.raises(UnknownAlert, match=f"no alert rule with id {one.id}"):
        store.remove_rule(settings, one.id)


def test_history_filters_by_time_and_symbol_newest_first(settings: Settings) -> None:
    rule = add_rule_row(settings)
    ids = [fire(settings, rule, symbol=s, fired_ms=T0 + i * 60_000) for i, s in enumerate("ABAB")]
    assert [e.id for e in store.history(settings)] == ids[::-1]
    assert [e.id for e in store.history(settings, symbols=["A"])] == [ids[2], ids[0]]
    assert [e.id for e in store.history(settings, since_ms=T0 + 60_000)] == ids[:0:-1]
    assert [e.id for e in store.history(settings, limit=2)] == ids[:1:-1]
    with connect(settings, autocommit=True) as conn:
        assert store.failed_deliveries(conn) == 0
        conn.execute("UPDATE alert_events SET delivered = 'failed' WHERE id = %s", (ids[1],))
        assert store.failed_deliveries(conn) == 1
