"""`cryptoctl alerts add|list|rm|history` against the real database: exact JSON/CSV, usage
errors as one line with exit 2."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cryptoctl.db.connection import connect
from cryptoctl.settings import Settings
from tests.alerts.outbox import T0, fire


def test_add_prints_the_rule_with_its_id_and_list_shows_it(settings: Settings, cli: Any) -> None:
    added = cli("alerts", "add", "--symbol", "btc", "--above", "100000", "--format", "json")
    assert added.exit_code == 0, added.stderr
    rule = json.loads(added.stdout)
    assert rule["id"] > 0
    assert {k: rule[k] for k in ("symbol", "source", "quote", "condition", "threshold", "window")} == {
        "symbol": "BTC", "source": None, "quote": None, "condition": "above",
        "threshold": 100000.0, "window": None,
    }  # fmt: skip
    change = cli(
        "alerts", "add", "-s", "SOL", "--change", "5%", "--within", "10m", "--repeat",
        "--source", "binance", "--quote", "usdt", "--notify", "https://hooks.example.com/x",
    )  # fmt: skip
    assert change.exit_code == 0 and change.stdout == ""
    assert "binance SOL/USDT change 5% within 10m (repeat)" in change.stderr
    listed = json.loads(cli("alerts", "list", "-f", "json").stdout)
    assert [(r["symbol"], r["state"], r["window"], r["notify"]) for r in listed] == [
        ("BTC", "armed", None, []),
        ("SOL", "armed", "10m", ["https://hooks.example.com/x"]),
    ]
    csv = cli("alerts", "list", "--format", "csv").stdout.splitlines()
    assert csv[0].startswith("id,symbol,source,quote,condition,threshold,window,repeat")
    assert len(csv) == 3
    table = cli("alerts", "list").stdout
    assert "BTC (any market)" in table and "above 100000" in table and "armed" in table


def test_rm_removes_the_rule_and_an_unknown_id_is_a_usage_error(settings: Settings, cli: Any) -> None:
    rule = json.loads(cli("alerts", "add", "-s", "ETH", "--below", "3000", "-f", "json").stdout)
    removed = cli("alerts", "rm", str(rule["id"]))
    assert removed.exit_code == 0 and f"removed alert {rule['id']}" in removed.stderr
    assert json.loads(cli("alerts", "list", "-f", "json").stdout) == []
    again = cli("alerts", "rm", str(rule["id"]))
    assert again.exit_code == 2
    wanted = f"error: no alert rule with id {rule['id']} — `cryptoctl alerts list` shows the ids"
    assert again.stderr.strip() == wanted


def test_history_as_json_csv_and_table(settings: Settings, cli: Any) -> None:
    first = fire(settings, 7, price=100_012.5, fired_ms=T0 + 1_000, time_ms=T0)
    second = fire(
        settings, 8, symbol="SOL", condition="change", threshold=5.0, window_ms=600_000,
        price=157.5, reference=150.0, time_ms=T0 + 60_000, fired_ms=T0 + 61_000,
    )  # fmt: skip
    since = ["--since", "2026-10-31T00:00:00Z"]
    rows = json.loads(cli("alerts", "history", *since, "-f", "json").stdout)
    assert rows == [
        {"id": second, "alert_id": 8, "source": "binance", "symbol": "SOL", "quote": "USDT",
         "condition": "change", "threshold": 5.0, "window": "10m", "price": 157.5,
         "reference": 150.0, "time": "2026-11-01T00:01:00Z", "fired_at": "2026-11-01T00:01:01Z",
         "delivered": "pending"},
        {"id": first, "alert_id": 7, "source": "binance", "symbol": "BTC", "quote": "USDT",
         "condition": "above", "threshold": 100000.0, "window": None, "price": 100012.5,
         "reference": None, "time": "2026-11-01T00:00:00Z", "fired_at": "2026-11-01T00:00:01Z",
         "delivered": "pending"},
    ]  # fmt: skip
    only_btc = cli("alerts", "history", "-s", "BTC", "--format", "csv").stdout.splitlines()
    assert only_btc == [
        "id,alert_id,source,symbol,quote,condition,threshold,window,price,reference,time,fired_at,"
        "delivered",
        f"{first},7,binance,BTC,USDT,above,100000.0,,100012.5,,2026-11-01T00:00:00Z,"
        "2026-11-01T00:00:01Z,pending",
    ]
    newest = json.loads(cli("alerts", "history", "--limit", "1", "-f", "json").stdout)
    assert [r["id"] for r in newest] == [second]
    table = cli("alerts", "history").stdout
    assert "binance SOL/USDT" in table and "157.50" in table and "pending" in table
    none = cli("alerts", "history", "--since", "1m")
    assert none.exit_code == 0 and none.stdout == "" and "no alerts fired since 1m" in none.stderr


GOOD_PRICE = "the price must be a number greater than zero"
NOTIFY_HINT = (
    "use https://host/path (a webhook), or an apprise URL such as tgram://TOKEN/CHAT,"
    " ntfy://topic, json://host/path"
)
MARKET_HINT = (
    "check --symbol/--source/--quote (e.g. --symbol BTC --source binance --quote USDT);"
    " `cryptoctl prices` lists the markets with data"
)
BAD_INPUT = [
    (["--above", "0"], f"--above '0': {GOOD_PRICE} — e.g. --above 100000"),
    (["--below", "cheap"], f"--below 'cheap': {GOOD_PRICE} — e.g. --below 100000"),
    (["--change", "5x", "--within", "10m"],
     "--change '5x': use a percentage greater than zero — e.g. --change 5%"),
    (["--change", "5%", "--within", "10q"],
     "--within: invalid duration '10q': use e.g. 250ms, 10s, 5m, 1h, 1d or 1h30m — e.g. --within 10m"),
    (["--change", "5%"],
     "--change needs --within: the window the change happens in — e.g. --change 5% --within 10m"),
    ([], "give exactly one condition: --above PRICE, --below PRICE or --change P% --within W"
         " — e.g. cryptoctl alerts add --symbol BTC --above 100000"),
    (["--above", "1", "--notify", "nowhere"],
     f"--notify 'nowhere' is no webhook or notification URL — {NOTIFY_HINT}"),
    (["--above", "1", "--notify", "http://[::1"],
     f"--notify 'http://[::1' is no webhook or notification URL — {NOTIFY_HINT}"),
    (["--above", "1", "--notify", "http://host:abc/x"],
     f"--notify 'http://host:abc/x' is no webhook or notification URL — {NOTIFY_HINT}"),
    (["--above", "1", "--quote", "XYZ"],
     f"no market BTC in XYZ: no candle or tick of it is stored and it is not a known coin — {MARKET_HINT}"),
    (["--above", "1", "--source", "binance", "--quote", "USD"],
     "no market BTC from binance in USD: no candle or tick of it is stored and it is not a known"
     f" coin — {MARKET_HINT}"),
    (["--above", "1", "--source", "nosuch"],
     "no market BTC from nosuch: no candle or tick of it is stored and it is not a known coin"
     f" — {MARKET_HINT}"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "wanted"), BAD_INPUT)
def test_bad_input_is_one_line_and_exit_2(settings: Settings, cli: Any, args: list[str], wanted: str) -> None:
    result = cli("alerts", "add", "--symbol", "BTC", *args)
    assert (result.exit_code, result.stdout, result.stderr.strip()) == (2, "", f"error: {wanted}")


def test_a_rule_watches_one_symbol(settings: Settings, cli: Any) -> None:
    result = cli("alerts", "add", "--symbol", "BTC,ETH", "--above", "1")
    assert result.exit_code == 2 and "give --symbol once" in result.stderr
    assert json.loads(cli("alerts", "list", "-f", "json").stdout) == []


def test_aggregate_delivers_fired_alerts_and_status_counts_failed_ones(
    settings: Settings, cli: Any
) -> None:
    from tests.alerts.outbox import event_row

    pending = fire(settings, 4)
    result = cli("aggregate", "--until-idle", "1s", "--duration", "20s")
    assert result.exit_code == 0, result.stderr
    assert event_row(settings, pending)["delivered"] == "delivered"  # by the worker of `aggregate`
    failed = fire(settings, 5)
    with connect(settings, autocommit=True) as conn:
        conn.execute("UPDATE alert_events SET delivered = 'failed' WHERE id = %s", (failed,))
    status = cli("status", "--format", "json")
    assert json.loads(status.stdout)["alert_deliveries_failed"] == 1
    assert "alerts: 1 failed deliveries" in cli("status").stdout
