"""Redis after commit: latest price, current and last final candle per symbol, pub/sub.

A background thread encodes and writes; the aggregator only hands over the candles'
documents (:meth:`CacheWriter.submit_candles`, cryptoctl/cache/documents.py), of which
the newest per key is kept, so Redis being slow or down never slows the pipeline. While
Redis is unreachable, only the newest pending value of each key is kept (a bounded set:
one per symbol and key kind) and written when Redis is back. A Lua script compares the
stored value with the new one so an older candle never overwrites a newer one, whichever
order writes arrive in (a restarted aggregator re-sends older state, for instance).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from cryptoctl.cache.client import Keys, MarketKey, market_id, redis_client
from cryptoctl.cache.documents import CandleDoc, LatestDoc
from cryptoctl.settings import Settings

# SET KEYS[1] = ARGV[1] unless the stored value is newer. Newness is the pair of fields
# named by ARGV[2], ARGV[3] (e.g. bucket_ms, trades) compared with ARGV[4], ARGV[5].
_SET_IF_NEWER = """
local cur = redis.call('GET', KEYS[1])
if cur then
  local ok, c = pcall(cjson.decode, cur)
  if ok and type(c) == 'table' then
    local a, b = tonumber(c[ARGV[2]]) or 0, tonumber(c[ARGV[3]]) or 0
    local na, nb = tonumber(ARGV[4]), tonumber(ARGV[5])
    if na < a or (na == a and nb < b) then return 0 end
  end
end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""


@dataclass(frozen=True)
class CacheStats:
    writes: int
    pending: int
    errors: int
    connected: bool
    last_error: str


# A pending write: key -> (order a, order b, names of the order fields, the document)
_Item = tuple[int, int, str, str, CandleDoc | LatestDoc]
_Pending = dict[str, _Item]
_Messages = dict[tuple[MarketKey, int], CandleDoc]


class CacheWriter:
    """Writes the cache from its own thread; :meth:`submit` never blocks on Redis."""

    def __init__(self, settings: Settings, *, retry_max_s: float = 2.0) -> None:
        self.keys = Keys(settings.redis_prefix)
        self.settings = settings
        self.retry_max_s = retry_max_s
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._pending: _Pending = {}
        self._messages: _Messages = {}  # newest per candle, to publish
        self._markets: set[str] = set()  # market_id strings
        self._thread: threading.Thread | None = None
        self.writes = 0
        self.errors = 0
        self.connected = False
        self.last_error = ""

    # producer side (the aggregator thread)

    def submit_candles(self, docs: list[CandleDoc]) -> None:
        """Candle updates just committed: newest per key is kept, then written in the thread.
        An open candle's close is also the symbol's latest price."""
        with self._lock:
            for d in docs:
                market = (d.symbol, d.source or "", d.quote or "USD")
                self._markets.add(market_id(market))
                self._messages[(market, d.bucket_ms)] = d
                order = (d.bucket_ms, d.trades, "bucket_ms", "trades", d)
                self._merge(self.keys.candle_final(market) if d.final else
                            self.keys.candle_current(market), order)
                if not d.final:
                    latest = LatestDoc.of_candle(d)
                    self._merge(self.keys.latest(market), (d.close_ts, 0, "ts", "ts", latest))
        self._wake.set()

    def _merge(self, key: str, item: _Item) -> None:
        cur = self._pending.get(key)
        if cur is None or (item[0], item[1]) >= (cur[0], cur[1]):
            self._pending[key] = item

    # the writer thread

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="cache-writer", daemon=True)
            self._thread.start()

    def close(self, timeout: float = 3.0) -> None:
        """Try to write what is pending for up to ``timeout`` seconds, then stop."""
        deadline = time.monotonic() + timeout
        while self.pending() and time.monotonic() < deadline and self._thread is not None:
            self._wake.set()
            time.sleep(0.05)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=max(0.1, deadline - time.monotonic()) + 1)

    def pending(self) -> int:
        return len(self._pending) + len(self._messages)

    def stats(self) -> CacheStats:
        return CacheStats(self.writes, self.pending(), self.errors, self.connected, self.last_error)

    def _run(self) -> None:
        client = redis_client(self.settings)
        script = client.register_script(_SET_IF_NEWER)
        backoff = 0.05
        while not self._stop.is_set():
            self._wake.wait(timeout=1.0)
            self._wake.clear()
            with self._lock:
                pending, self._pending = self._pending, {}
                messages, self._messages = self._messages, {}
                markets = set(self._markets)
            if not pending and not messages:
                continue
            try:
                self._write(client, script, pending, messages, markets)
                self.connected, backoff = True, 0.05
            except Exception as exc:  # any Redis failure: keep the data, retry later
                self.errors += 1
                self.connected = False
                self.last_error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                self._requeue(pending, messages)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.retry_max_s)
                self._wake.set()

    def _write(
        self, client: Any, script: Any, pending: _Pending,
        messages: _Messages, markets: set[str],
    ) -> None:
        # Encoded here, in the writer's thread: the aggregator only hands documents over.
        texts: dict[int, bytes] = {}  # id(document) -> JSON: a candle is stored and published
        pipe = client.pipeline(transaction=False)
        for key, (a, b, fa, fb, doc) in pending.items():
            text = texts[id(doc)] = doc.to_json()
            script(keys=[key], args=[text, fa, fb, a, b], client=pipe)
        if markets:
            pipe.sadd(self.keys.markets, *markets)
        for doc in messages.values():
            text = texts.get(id(doc)) or doc.to_json()
            pipe.publish(self.keys.channel, text)
        pipe.execute()
        self.writes += len(pending)

    def _requeue(self, pending: _Pending, messages: _Messages) -> None:
        with self._lock:
            for key, item in pending.items():
                self._merge(key, item)
            for mkey, doc in messages.items():
                self._messages.setdefault(mkey, doc)  # a newer one submitted since wins
