"""The engine's writes on their own (the sink, the rule watcher) on the local PostgreSQL."""

from __future__ import annotations

from cryptoctl.alerts.engine import AlertFlush, RuleWatcher
from cryptoctl.alerts.rules import Fired, Rule
from cryptoctl.db.connection import connect
from cryptoctl.db.sink import PartitionFlush
from tests.aggregator.data import BASE, scalar
from tests.aggregator.procs import wait_for
from tests.aggregator.test_sink import sink
from tests.alerts.test_engine_e2e import add_rules


def event_flush(epoch: int, rule: Rule, *offsets: int,
                markets: tuple[tuple[str, str], ...] = (("binance", "USDT"),)) -> PartitionFlush:
    """A flush of events of ``rule``: one per offset, the i-th in the i-th market (cycled)."""
    events, states = [], []
    for i, offset in enumerate(offsets):
        source, quote = markets[i % len(markets)]
        events.append((Fired(rule, source, rule.symbol, quote, 99.0, BASE + offset), offset))
        states.append((rule.id, source, rule.symbol, quote, False, 1, None))
    return PartitionFlush(0, epoch, max(offsets) + 1, BASE, alerts=AlertFlush(events, states))


def test_a_one_shot_rule_commits_one_event_whoever_fires_it(settings):
    (rule,) = add_rules(settings, [("BTC", "below", 100.0, "binance", "USDT", None, False)])
    a, b = sink(settings, "a"), sink(settings, "b")
    first = event_flush(a.claim([0], "c1")[0].epoch, rule, 5)
    assert a.commit([first], "c1") == set()
    assert first.alerts is not None and first.alerts.inserted == 1
    # A member whose state did not know the market fired fires it at a later tick: not stored.
    again = event_flush(b.claim([0], "c1")[0].epoch, rule, 9)
    assert b.commit([again], "c1") == set()
    assert again.alerts is not None and again.alerts.inserted == 0
    assert scalar(settings, "SELECT count(*) FROM alert_events") == 1
    assert scalar(settings, "SELECT kafka_offset FROM alert_events") == 5
    assert scalar(settings, "SELECT NOT active AND triggered_at IS NOT NULL FROM price_alerts")
    assert scalar(settings, "SELECT fired FROM alert_state") == 1
    a.close()
    b.close()


def test_a_one_shot_rule_of_several_markets_fires_once_in_each(settings):
    (rule,) = add_rules(settings, [("BTC", "below", 100.0, None, None, None, False)])
    a, b = sink(settings, "a"), sink(settings, "b")
    two = (("binance", "USDT"), ("coinbase", "USD"))
    first = event_flush(a.claim([0], "c1")[0].epoch, rule, 5, markets=two[:1])
    assert a.commit([first], "c1") == set()
    triggered = scalar(settings, "SELECT triggered_at FROM price_alerts")
    assert triggered is not None
    assert scalar(settings, "SELECT active FROM price_alerts")  # its other markets may fire
    # Another member fires both markets (the first again, wrongly): only the new one stored.
    both = event_flush(b.claim([0], "c1")[0].epoch, rule, 8, 9, markets=two)
    assert b.commit([both], "c1") == set()
    assert both.alerts is not None and both.alerts.inserted == 1
    with connect(settings) as conn:
        events = conn.execute("SELECT source, quote, kafka_offset FROM alert_events"
                              " ORDER BY kafka_offset").fetchall()
    assert events == [("binance", "USDT", 5), ("coinbase", "USD", 9)]
    assert scalar(settings, "SELECT triggered_at FROM price_alerts") == triggered  # the first
    assert scalar(settings, "SELECT active FROM price_alerts")
    assert scalar(settings, "SELECT array_agg(fired ORDER BY source) FROM alert_state") == [1, 1]
    a.close()
    b.close()


def test_a_replayed_event_is_stored_once_and_a_removed_rule_not_at_all(settings):
    repeat, removed = add_rules(settings, [("BTC", "below", 100.0, None, None, None, True)] * 2)
    a = sink(settings, "a")
    epoch = a.claim([0], "c1")[0].epoch
    assert a.commit([event_flush(epoch, repeat, 5)], "c1") == set()
    replayed = event_flush(epoch, repeat, 5)  # the same tick again (same partition, offset)
    assert a.commit([replayed], "c1") == set()
    assert replayed.alerts is not None and replayed.alerts.inserted == 0
    with connect(settings) as conn:
        conn.execute("DELETE FROM price_alerts WHERE id = %s", (removed.id,))
    # The aggregator still holds the deleted rule: its event and state are not written,
    # and the flush (candles, offsets) commits all the same.
    late = event_flush(epoch, removed, 7)
    assert a.commit([late], "c1") == set()
    assert scalar(settings, "SELECT count(*) FROM alert_events") == 1
    assert scalar(settings, "SELECT count(*) FROM alert_state") == 1
    assert scalar(settings, "SELECT next_offset FROM processing_metadata") == 8
    a.close()


def test_the_watcher_follows_rules_added_deactivated_and_deleted(settings):
    watcher = RuleWatcher(settings)
    watcher.start()
    try:
        assert watcher.current == {}
        eth, btc = add_rules(settings, [("ETH", "above", 5.0, None, None, None, False),
                                        ("BTC", "change", 5.0, "kraken", "USD", 60_000, True)])
        wait_for("both rules", lambda: len(watcher.current) == 2, 10)
        assert watcher.current == {"ETH": [eth], "BTC": [btc]}
        with connect(settings) as conn:
            conn.execute("UPDATE price_alerts SET active = false WHERE id = %s", (eth.id,))
        wait_for("ETH gone", lambda: "ETH" not in watcher.current, 10)
        with connect(settings) as conn:
            conn.execute("DELETE FROM price_alerts")
        wait_for("no rules", lambda: watcher.current == {}, 10)
    finally:
        watcher.close()
