"""`cryptoctl produce --source binance|coinbase|kraken` as a command: in-process with the
CLI runner, and as a real process killed with SIGKILL mid-stream and restarted (the
topic then holds every trade from the start exactly once)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from cryptoctl.exchanges.trade import Market
from cryptoctl.settings import Settings
from cryptoctl.tick import Tick
from tests.fakes import FakeExchange, fake_exchange, generate_trades
from tests.helpers import consume_all, produce_ticks, stack_env
from tests.sources.test_exchange_feed import assert_exactly, topic_contents, trade_sets, wait_sent
from tests.watch.pty_terminal import PtyCommand

CRYPTOCTL = str(Path(sys.executable).with_name("cryptoctl"))


def urls(fx: FakeExchange) -> list[str]:
    return ["--ws-url", fx.ws_url, "--rest-url", fx.rest_url]


def test_kraken_with_count_prints_the_feed_in_the_json_summary(settings: Settings, cli: Any) -> None:
    sets = trade_sets("kraken", ["BTC", "ETH"], 300)
    with fake_exchange("kraken", sets, live=200, pace_s=0.002) as fx:
        result = cli("produce", "--source", "kraken", "-s", "BTC,ETH", *urls(fx), "-n", "150", "-f", "json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["source"] == "kraken" and summary["produced"] == summary["delivered"] == 150
    feed = summary["feed"]
    assert [m["market"] for m in feed["markets"]] == ["kraken BTC/USD", "kraken ETH/USD"]
    assert sum(m["trades"] for m in feed["markets"]) == 150
    assert summary["markers"] == 0 and all(m["gaps_open"] == 0 for m in feed["markets"])
    ticks, gaps = topic_contents(settings, 150)
    assert gaps == []
    for market, trades in sets.items():
        got = ticks[market]
        start = next(i for i, t in enumerate(trades) if t.trade_id == got[0]["trade_id"])
        assert_exactly(got, trades[start : start + len(got)])
        assert feed["markets"][list(sets).index(market)]["last_trade_id"] == got[-1]["trade_id"]


def test_an_unknown_symbol_exits_2_naming_the_exchange_spelling(
    settings: Settings, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    sets = trade_sets("kraken", ["BTC"], 10)
    with fake_exchange("kraken", sets, live=0) as fx:
        monkeypatch.setenv("CRYPTOCTL_KRAKEN_REST_URL", fx.rest_url)  # the setting, from env
        monkeypatch.setenv("CRYPTOCTL_KRAKEN_WS_URL", fx.ws_url)
        result = cli("produce", "--source", "kraken", "-s", "BTC,DOGE")
    assert result.exit_code == 2
    assert "kraken has no market DOGE/USD (tried XDGUSD)" in result.stderr
    assert result.stdout == ""


def test_flags_of_exchanges_are_refused_for_other_sources_and_back(cli: Any) -> None:
    result = cli("produce", "--source", "synthetic", "--since", "1h")
    assert result.exit_code == 2
    assert "--since is for --source binance or coinbase or kraken" in result.stderr
    result = cli("produce", "--source", "coinbase", "--rate", "5")
    assert result.exit_code == 2
    assert "--rate is for --source synthetic" in result.stderr


def test_a_ban_exits_3_with_the_ban_message_after_the_summary(settings: Settings, cli: Any) -> None:
    sets = trade_sets("binance", ["BTC"], 300)
    with fake_exchange("binance", sets, live=250, pace_s=0.004) as fx:
        # banned right after the market check: the --since history asks next, and gets a 418
        def ban_after_the_check() -> None:
            while fx.requests["/api/v3/exchangeInfo"] < 1:
                time.sleep(0.001)
            fx.faults.rest_ban = -1

        threading.Thread(target=ban_after_the_check, daemon=True).start()
        result = cli("produce", "--source", "binance", "-s", "BTC", *urls(fx), "--since", "1h")
    assert result.exit_code == 3, result.stderr
    assert "binance banned this IP address" in result.stderr
    assert "HTTP 418" in result.stderr
    assert "stopped by" in result.stderr and "source error" in result.stderr


def _start(settings: Settings, fx: FakeExchange, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [CRYPTOCTL, "produce", "--source", "binance", "-s", "BTC", *urls(fx), *args],
        env=stack_env(settings), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _topic_last_id(settings: Settings) -> int | None:
    messages = consume_all(settings, timeout=3)
    ids = [orjson.loads(m.value())["trade_id"] for m in messages]
    return max(ids) if ids else None


def publish_steadily(fx: FakeExchange, stop: threading.Event, *, pace_s: float, while_down: int) -> None:
    """One trade every pace_s; with nobody subscribed, only ``while_down`` more (they are
    missed by the stream), then wait: the live tail outlasts a restart."""
    down = 0
    while not stop.is_set() and fx.live_remaining:
        if any(s.markets for s in fx.sessions()):
            down = 0
        elif down >= while_down:
            time.sleep(0.005)
            continue
        else:
            down += 1
        fx.publish(1)
        time.sleep(pace_s)


def test_sigkill_mid_stream_then_restart_has_every_trade_exactly_once(settings: Settings) -> None:
    sets = trade_sets("binance", ["BTC"], 1_200)
    ((market, trades),) = sets.items()
    stop = threading.Event()
    with fake_exchange("binance", sets, live=1_000, pace_s=None) as fx:
        publisher = threading.Thread(
            target=publish_steadily, args=(fx, stop), kwargs={"pace_s": 0.004, "while_down": 100},
            daemon=True,
        )  # fmt: skip
        publisher.start()
        first = _start(settings, fx)
        try:
            wait_sent(fx, market, 150, timeout=20)
            got = consume_all(settings, n=100, timeout=20)
            assert len(got) >= 100, "the first producer delivered nothing"
        finally:
            first.send_signal(signal.SIGKILL)  # no flush, no summary: in-flight ticks may be lost
            first.communicate(timeout=10)
        assert first.returncode == -signal.SIGKILL
        landed = _topic_last_id(settings)
        assert landed is not None
        second = _start(settings, fx, "--format", "json")
        try:
            start = fx.sent_ids(market)[0]  # the first producer's first live trade
            expected = [t for t in trades if t.trade_id >= start]
            on_topic = consume_all(settings, n=len(expected), timeout=25)
            assert len(on_topic) == len(expected), f"not caught up: {second.poll()}"
            second.send_signal(signal.SIGTERM)
            out, err = second.communicate(timeout=40)
        finally:
            if second.poll() is None:
                second.kill()
            stop.set()
    assert second.returncode == 0, err
    summary = json.loads(out)
    (stats,) = summary["feed"]["markets"]
    assert stats["last_trade_id"] == trades[-1].trade_id and stats["gaps_open"] == 0
    assert stats["gaps_filled"] >= 1  # what was published while no producer ran
    ticks, gaps = topic_contents(settings, len(expected))
    assert gaps == []
    assert_exactly(ticks[Market("binance", "BTC", "USDT")], expected)
    assert summary["produced"] == trades[-1].trade_id - landed


@pytest.mark.parametrize("cols", [80, 120])
def test_a_resume_after_an_old_trade_shows_its_catch_up_on_the_status_line(
    settings: Settings, cols: int
) -> None:
    """Without --since, a market resumes after its last trade on the topic however old:
    the status line says how many REST pages it fetched and how many trades are left."""
    market = Market("binance", "BTC", "USDT")
    trades = generate_trades(5, 6_100, idle_every=0)
    with fake_exchange("binance", {market: trades}, live=100, pace_s=0.01) as fx:
        fx.faults.rest_delay_s = 0.25  # six pages to catch up on: a catch-up that lasts
        old = trades[50]
        produce_ticks(settings, [Tick("BTC", old.price, old.ts, "binance", old.ts, "USDT", old.qty,
                                      trade_id=old.trade_id, side=old.side)])
        term = PtyCommand(["produce", "--source", "binance", "-s", "BTC", *urls(fx)],
                          stack_env(settings), cols=cols)
        try:
            behind = r"catch-up ([\d,]+)p ([\d,]+) behind"
            term.wait_for(lambda text: re.search(behind, text) is not None, timeout=60)
            term.wait_for(lambda text: f"#{trades[-1].trade_id}" in text, timeout=60)
            code = term.interrupt()
            screen = term.text
        finally:
            term.close()
    assert code == 0, screen
    progress = [(int(m.group(1).replace(",", "")), int(m.group(2).replace(",", "")))
                for m in re.finditer(behind, screen)]  # fmt: skip
    assert progress and 0 < progress[0][1] <= 6_000
    assert progress == sorted(progress, key=lambda p: (p[0], -p[1]))  # pages up, trades down
    wide = [line for line in screen.splitlines() if " · " in line and len(line) > cols]
    assert not wide, wide  # the status line fits the terminal
    pages = re.search(r"REST pages (\d+)", screen)
    assert pages and int(pages.group(1)) >= 6, screen[-2000:]
