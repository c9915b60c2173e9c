"""The rules table masks what a notify URL keeps secret (tokens, chat ids, secret paths)."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from cryptoctl.alerts.store import Rule
from cryptoctl.render.alerts import masked_target, rules_table


@pytest.mark.parametrize(("url", "shown"), [
    ("https://hooks.slack.com/services/T000/B000/XXXXSECRET", "https://hooks.slack.com/…"),
    ("http://user:pw@127.0.0.1:8080/h?key=abc", "http://127.0.0.1:8080/…"),
    ("json://127.0.0.1:9/x", "json://127.0.0.1:9/…"),
    ("tgram://123456789:abcdefgh/12345", "tgram://…"),
    ("ntfy://mytopic", "ntfy://…"),
    ("no-scheme", "…"),
    ("https://example.com?token=SECRET", "https://example.com/…"),
    ("https://example.com#SECRET", "https://example.com/…"),
    ("https://u:p/w@h/x", "https://…"),  # a password with a slash: nothing of it shown
])  # fmt: skip
def test_a_notify_url_is_shown_by_scheme_and_host(url: str, shown: str) -> None:
    assert masked_target(url) == shown


def test_the_rules_table_shows_no_token() -> None:
    rule = Rule(3, "BTC", None, None, "above", 100_000.0, None, False,
                ("tgram://123456789:abcdefgh/12345", "https://hooks.example.com/s3cr3t"),
                True, 0)
    out = io.StringIO()
    Console(file=out, width=120, color_system=None).print(rules_table([rule], 120))
    screen = out.getvalue()
    assert "tgram://…" in screen and "https://hooks.example.com/…" in screen
    assert "abcdefgh" not in screen and "s3cr3t" not in screen


def test_the_rules_table_fits_80_columns_and_still_shows_no_token() -> None:
    rule = Rule(3, "BTC", "binance", "USDT", "change", 5.0, 600_000, True,
                ("tgram://123456789:abcdefgh/12345",), True, 0)
    out = io.StringIO()
    Console(file=out, width=80, color_system=None).print(rules_table([rule], 80))
    lines = out.getvalue().splitlines()
    assert max(len(line) for line in lines) <= 80
    assert any("binance BTC/USDT" in line for line in lines)
    assert "abcdefgh" not in out.getvalue()
