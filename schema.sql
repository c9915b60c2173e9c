-- cryptoctl storage schema. Applied idempotently by `cryptoctl up` and `cryptoctl db init`
-- into the schema named by `search_path` (setting db_schema, default "public").
-- Runs unchanged on plain PostgreSQL 15+; uses TimescaleDB hypertables when the extension
-- is installed. Applying it twice changes nothing.
--
-- Schema version 3 (table cryptoctl_schema). Version 2: candles, raw and late ticks are
-- keyed by the market (source, symbol, quote) and carry exchange trade ids; the per-market
-- trade checkpoint and recorded feed gaps. Version 3: price alerts on any market, with
-- change-within-a-window rules, repeat, notify targets, per-market rule state and an outbox
-- of fired events. Older databases (cryptoctl 0.1 = version 1, version 2) are migrated in
-- place by the block after the tables, keeping their candles and rules.

CREATE TABLE IF NOT EXISTS cryptoctl_schema (
    version     integer NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS cryptocurrencies (
    symbol        text PRIMARY KEY,
    name          text,
    coingecko_id  text,
    quote         text NOT NULL DEFAULT 'USD',
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Every accepted tick, written in the same transaction as the candles and offsets it fed.
CREATE TABLE IF NOT EXISTS raw_price_data (
    time             timestamptz NOT NULL,          -- event time (tick ts)
    symbol           text NOT NULL,
    quote            text NOT NULL DEFAULT 'USD',
    price            double precision NOT NULL CHECK (price > 0),
    qty              double precision,
    source           text NOT NULL,
    recv_time        timestamptz,
    kafka_partition  integer,
    kafka_offset     bigint,
    extra            jsonb,
    trade_id         text,                          -- the exchange's trade id, as it was sent
    side             text                           -- the taker's side: buy or sell
);
CREATE INDEX IF NOT EXISTS raw_price_data_symbol_time_idx ON raw_price_data (symbol, time DESC);

-- One-minute event-time candles. Full state is stored (sums, open/close event times), so
-- a consumer that takes over a partition continues a candle exactly where it was left.
CREATE TABLE IF NOT EXISTS price_aggregates_1m (
    source           text NOT NULL,                 -- the market: source, symbol, quote
    symbol           text NOT NULL,
    quote            text NOT NULL,
    bucket           timestamptz NOT NULL,          -- window start, UTC-aligned
    open             double precision NOT NULL,
    high             double precision NOT NULL,
    low              double precision NOT NULL,
    close            double precision NOT NULL,
    volume           double precision NOT NULL DEFAULT 0,
    trades           bigint NOT NULL,
    price_sum        double precision NOT NULL,     -- sum of prices (avg = price_sum / trades)
    pv_sum           double precision NOT NULL DEFAULT 0,  -- sum of price*qty (vwap = pv_sum / volume)
    avg_price        double precision NOT NULL,
    vwap             double precision,              -- null when volume is 0
    open_time        timestamptz NOT NULL,          -- event time of the open tick
    close_time       timestamptz NOT NULL,          -- event time of the close tick
    kafka_partition  integer,
    final            boolean NOT NULL DEFAULT false,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    open_trade_id    bigint,                        -- ties on one ms: lowest trade id opens,
    close_trade_id   bigint,                        -- highest closes (exchange trades)
    PRIMARY KEY (source, symbol, quote, bucket)
);
CREATE INDEX IF NOT EXISTS price_aggregates_1m_symbol_idx
    ON price_aggregates_1m (symbol, bucket);
CREATE INDEX IF NOT EXISTS price_aggregates_1m_open_idx
    ON price_aggregates_1m (kafka_partition, bucket) WHERE NOT final;

-- Ticks that arrived after their window was final: recorded, never silently lost.
CREATE TABLE IF NOT EXISTS late_ticks (
    time             timestamptz NOT NULL,
    source           text,                          -- null in rows of schema version 1
    symbol           text NOT NULL,
    quote            text,
    trade_id         text,
    price            double precision NOT NULL,
    qty              double precision,
    kafka_partition  integer NOT NULL,
    kafka_offset     bigint NOT NULL,
    watermark        timestamptz NOT NULL,
    lateness_ms      bigint NOT NULL,               -- how far behind the watermark it was
    recorded_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS late_ticks_symbol_time_idx ON late_ticks (symbol, time DESC);

-- Price alert rules. A rule names a symbol and, optionally, a source and a quote (null:
-- every market of the symbol, each firing on its own). above/below: threshold is a price;
-- change: threshold is a percentage and window_ms the event-time window it is measured
-- over. One-shot rules go inactive when they fire (triggered_at); repeat rules re-arm once
-- the condition has been false again. notify: apprise / http(s) URLs to deliver events to.
CREATE TABLE IF NOT EXISTS price_alerts (
    id            bigserial PRIMARY KEY,
    symbol        text NOT NULL,
    condition     text NOT NULL CHECK (condition IN ('above', 'below', 'change')),
    threshold     double precision NOT NULL CHECK (threshold > 0),
    active        boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now(),
    triggered_at  timestamptz,
    source        text,
    quote         text,
    window_ms     bigint CHECK (window_ms > 0),
    repeat        boolean NOT NULL DEFAULT false,
    notify        text[] NOT NULL DEFAULT '{}',
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT price_alerts_window_check CHECK ((condition = 'change') = (window_ms IS NOT NULL))
);

-- Per rule and market: whether it is armed (may fire on the next tick that meets it), how
-- often it fired and when. Written by the aggregator in the transaction of the candles and
-- offsets of the ticks that changed it, so a replay after a crash sees the state those
-- ticks left. window_state: the aggregator's own encoding of a change rule's window.
CREATE TABLE IF NOT EXISTS alert_state (
    alert_id       bigint NOT NULL REFERENCES price_alerts (id) ON DELETE CASCADE,
    source         text NOT NULL,
    symbol         text NOT NULL,
    quote          text NOT NULL,
    armed          boolean NOT NULL DEFAULT true,
    fired          bigint NOT NULL DEFAULT 0,
    last_fired_at  timestamptz,
    window_state   jsonb,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (alert_id, source, symbol, quote)
);

-- Fired alerts: the outbox. One row per firing, inserted with the candles and offsets of
-- the tick that fired it (the unique key makes a replayed tick unable to fire twice), then
-- published and delivered after commit. alert_id has no foreign key: history outlives
-- `alerts rm`. delivered: pending until every notify target took it (delivered_targets),
-- failed when the retry budget ran out.
CREATE TABLE IF NOT EXISTS alert_events (
    id                 bigserial PRIMARY KEY,
    alert_id           bigint NOT NULL,
    source             text NOT NULL,
    symbol             text NOT NULL,
    quote              text NOT NULL,
    condition          text NOT NULL,
    threshold          double precision NOT NULL,
    window_ms          bigint,
    price              double precision NOT NULL,     -- the tick that fired it
    reference          double precision,              -- change: the window's low or high
    time               timestamptz NOT NULL,          -- that tick's event time
    fired_at           timestamptz NOT NULL DEFAULT now(),
    kafka_partition    integer NOT NULL,
    kafka_offset       bigint NOT NULL,
    notify             text[] NOT NULL DEFAULT '{}',
    published          boolean NOT NULL DEFAULT false, -- sent on the Redis channel
    delivered          text NOT NULL DEFAULT 'pending'
                       CHECK (delivered IN ('pending', 'delivered', 'failed')),
    delivered_targets  text[] NOT NULL DEFAULT '{}',
    attempts           integer NOT NULL DEFAULT 0,
    next_attempt_at    timestamptz NOT NULL DEFAULT now(),
    last_error         text,
    delivered_at       timestamptz,
    UNIQUE (alert_id, source, symbol, quote, kafka_partition, kafka_offset)
);
CREATE INDEX IF NOT EXISTS alert_events_pending_idx
    ON alert_events (next_attempt_at) WHERE delivered = 'pending' OR NOT published;
CREATE INDEX IF NOT EXISTS alert_events_fired_idx ON alert_events (fired_at DESC);

-- The aggregator's checkpoint: per (group, topic, partition) the next offset to read, the
-- watermark, the owner epoch that fences stale consumers, and the broker cluster id the
-- offsets belong to (a local broker restarted empty has a new id).
CREATE TABLE IF NOT EXISTS processing_metadata (
    consumer_group   text NOT NULL,
    topic            text NOT NULL,
    kafka_partition  integer NOT NULL,
    next_offset      bigint NOT NULL DEFAULT 0,
    watermark_ms     bigint,
    owner_epoch      bigint NOT NULL DEFAULT 0,
    owner            text,
    cluster_id       text,
    updated_at       timestamptz NOT NULL DEFAULT now(),  -- claimed or committed
    committed_at     timestamptz,                   -- offsets last advanced by a flush
    PRIMARY KEY (consumer_group, topic, kafka_partition)
);

-- The Kafka consumer group a pipeline (group, topic) currently consumes with. Generation 0
-- is the group itself; a member that finds the group wedged (no partitions assigned for
-- a long while, messages unread and nobody committing) moves the pipeline to generation
-- n + 1, Kafka group "<group>.gen<n+1>". The checkpoint above stays keyed by the pipeline,
-- so the new Kafka group resumes from it.
CREATE TABLE IF NOT EXISTS kafka_generations (
    consumer_group   text NOT NULL,
    topic            text NOT NULL,
    generation       integer NOT NULL DEFAULT 0,
    reason           text,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, topic)
);

-- Exactly-once per trade: for each market, the newest exchange trade id applied to its
-- candles, committed with them. A trade at or below it (a re-sent or re-read trade) is not
-- applied again, whatever crashed in between. A market lives on one partition.
CREATE TABLE IF NOT EXISTS market_trades (
    consumer_group   text NOT NULL,
    topic            text NOT NULL,
    source           text NOT NULL,
    symbol           text NOT NULL,
    quote            text NOT NULL,
    kafka_partition  integer NOT NULL,
    last_trade_id    bigint NOT NULL,
    last_time        timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, topic, source, symbol, quote)
);

-- Trades an exchange feed knows it missed and could not fetch: never hidden. Candles of
-- the minutes from after_time to before_time are incomplete.
CREATE TABLE IF NOT EXISTS feed_gaps (
    id               bigserial PRIMARY KEY,
    source           text NOT NULL,
    symbol           text NOT NULL,
    quote            text NOT NULL,
    first_trade_id   bigint NOT NULL,               -- the missing ids, inclusive
    last_trade_id    bigint NOT NULL,
    after_time       timestamptz NOT NULL,          -- the trades around the gap
    before_time      timestamptz NOT NULL,
    reason           text NOT NULL,
    recorded_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (source, symbol, quote, first_trade_id, last_trade_id)
);

-- Older databases. From schema version 1: market columns (candles of one symbol were one
-- market then; the source and quote its raw ticks name most, else 'unknown'/'USD'), trade
-- ids, new views. From version 2: the alert rule columns.
DO $$
BEGIN
    IF (SELECT max(version) FROM cryptoctl_schema) > 3 THEN
        RAISE EXCEPTION 'cryptoctl: this database has schema version %, newer than this'
            ' cryptoctl (3): upgrade cryptoctl', (SELECT max(version) FROM cryptoctl_schema);
    END IF;
    IF NOT EXISTS (SELECT 1 FROM information_schema.columns
                   WHERE table_schema = current_schema()
                     AND table_name = 'price_aggregates_1m' AND column_name = 'source') THEN
        ALTER TABLE price_aggregates_1m ADD COLUMN source text, ADD COLUMN quote text,
            ADD COLUMN open_trade_id bigint, ADD COLUMN close_trade_id bigint;
        -- Each symbol's most frequent (source, quote), counted once: not per candle.
        UPDATE price_aggregates_1m c SET source = m.source, quote = m.quote
          FROM (SELECT DISTINCT ON (symbol) symbol, source, quote
                  FROM raw_price_data GROUP BY symbol, source, quote
                 ORDER BY symbol, count(*) DESC, source, quote) m
         WHERE m.symbol = c.symbol;
        UPDATE price_aggregates_1m SET source = 'unknown', quote = 'USD' WHERE source IS NULL;
        ALTER TABLE price_aggregates_1m ALTER COLUMN source SET NOT NULL,
            ALTER COLUMN quote SET NOT NULL;
        ALTER TABLE price_aggregates_1m DROP CONSTRAINT price_aggregates_1m_pkey;
        ALTER TABLE price_aggregates_1m ADD PRIMARY KEY (source, symbol, quote, bucket);
        CREATE INDEX IF NOT EXISTS price_aggregates_1m_symbol_idx
            ON price_aggregates_1m (symbol, bucket);
        ALTER TABLE raw_price_data ADD COLUMN IF NOT EXISTS trade_id text,
            ADD COLUMN IF NOT EXISTS side text;
        ALTER TABLE late_ticks ADD COLUMN IF NOT EXISTS source text,
            ADD COLUMN IF NOT EXISTS quote text, ADD COLUMN IF NOT EXISTS trade_id text;
        DROP VIEW IF EXISTS v_latest_prices;
        DROP VIEW IF EXISTS v_price_stats_24h;
    END IF;
    -- From version 2 (and 1): alert rules on any market, change rules, repeat, notify.
    IF NOT EXISTS (SELECT 1 FROM information_schema.columns
                   WHERE table_schema = current_schema()
                     AND table_name = 'price_alerts' AND column_name = 'window_ms') THEN
        ALTER TABLE price_alerts ADD COLUMN source text, ADD COLUMN quote text,
            ADD COLUMN window_ms bigint CHECK (window_ms > 0),
            ADD COLUMN repeat boolean NOT NULL DEFAULT false,
            ADD COLUMN notify text[] NOT NULL DEFAULT '{}',
            ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();
        ALTER TABLE price_alerts DROP CONSTRAINT IF EXISTS price_alerts_condition_check;
        ALTER TABLE price_alerts ADD CONSTRAINT price_alerts_condition_check
            CHECK (condition IN ('above', 'below', 'change'));
        ALTER TABLE price_alerts ADD CONSTRAINT price_alerts_window_check
            CHECK ((condition = 'change') = (window_ms IS NOT NULL));
    END IF;
    -- `status` tells a pipeline that commits from one that only claims (a crash loop).
    ALTER TABLE processing_metadata ADD COLUMN IF NOT EXISTS committed_at timestamptz;
    DELETE FROM cryptoctl_schema WHERE version < 3;
    INSERT INTO cryptoctl_schema (version) SELECT 3
    WHERE NOT EXISTS (SELECT 1 FROM cryptoctl_schema);
END
$$;

-- Latest price per market, from the newest candle (present whether or not raw ticks are kept).
CREATE OR REPLACE VIEW v_latest_prices AS
SELECT DISTINCT ON (source, symbol, quote)
       source, symbol, quote, close AS price, close_time AS time, bucket, final
FROM price_aggregates_1m
ORDER BY source, symbol, quote, bucket DESC;

-- 24-hour statistics per market from the 1-minute candles of the last 24 hours.
CREATE OR REPLACE VIEW v_price_stats_24h AS
SELECT source, symbol, quote,
       (array_agg(open ORDER BY bucket ASC))[1]   AS open,
       max(high)                                   AS high,
       min(low)                                    AS low,
       (array_agg(close ORDER BY bucket DESC))[1] AS last,
       ((array_agg(close ORDER BY bucket DESC))[1] / (array_agg(open ORDER BY bucket ASC))[1] - 1)
           * 100                                   AS change_pct,
       sum(volume)                                 AS volume,
       sum(trades)                                 AS trades,
       min(bucket)                                 AS first_bucket,
       max(bucket)                                 AS last_bucket
FROM price_aggregates_1m
WHERE bucket >= now() - interval '24 hours'
GROUP BY source, symbol, quote;

-- A running aggregator reloads its alert rules, and the delivery worker wakes for new
-- events, on these notifications (sent at commit; the payload names the schema, so
-- listeners of other schemas in one database can ignore it). Both also poll.
CREATE OR REPLACE FUNCTION cryptoctl_alert_rules_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('cryptoctl_alert_rules', current_schema());
    RETURN NULL;
END
$$;
CREATE OR REPLACE TRIGGER price_alerts_changed
    AFTER INSERT OR UPDATE OR DELETE ON price_alerts
    FOR EACH STATEMENT EXECUTE FUNCTION cryptoctl_alert_rules_changed();

CREATE OR REPLACE FUNCTION cryptoctl_alert_fired() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('cryptoctl_alert_events', current_schema());
    RETURN NULL;
END
$$;
CREATE OR REPLACE TRIGGER alert_events_fired
    AFTER INSERT ON alert_events
    FOR EACH STATEMENT EXECUTE FUNCTION cryptoctl_alert_fired();

-- TimescaleDB, where present: hypertables on the time columns. The extension's functions
-- live in the extension's schema, which is not on cryptoctl's search_path (only its own
-- schema is), so they are called qualified by it, on tables qualified by ours.
DO $$
DECLARE
    ext name;                       -- the extension's schema
    own name := current_schema();   -- cryptoctl's schema (search_path)
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')
       AND NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        -- In public where we may: in cryptoctl's schema, a DROP SCHEMA ... CASCADE of it
        -- would drop the extension for every other schema of the database too.
        IF EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'public')
           AND has_schema_privilege('public', 'CREATE') THEN
            CREATE EXTENSION IF NOT EXISTS timescaledb SCHEMA public;
        ELSE
            CREATE EXTENSION IF NOT EXISTS timescaledb;
        END IF;
    END IF;
    SELECT n.nspname INTO ext
    FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
    WHERE e.extname = 'timescaledb';
    IF ext IS NOT NULL THEN
        EXECUTE format('SELECT %I.create_hypertable(%L::regclass, %L,'
                       ' if_not_exists => true, migrate_data => true)',
                       ext, format('%I.%I', own, 'raw_price_data'), 'time');
        EXECUTE format('SELECT %I.create_hypertable(%L::regclass, %L,'
                       ' chunk_time_interval => interval %L,'
                       ' if_not_exists => true, migrate_data => true)',
                       ext, format('%I.%I', own, 'price_aggregates_1m'), 'bucket', '7 days');
        EXECUTE format('SELECT %I.create_hypertable(%L::regclass, %L,'
                       ' if_not_exists => true, migrate_data => true)',
                       ext, format('%I.%I', own, 'late_ticks'), 'time');
        BEGIN
            -- Retention for raw ticks needs the Timescale License (not Apache-only builds).
            EXECUTE format('SELECT %I.add_retention_policy(%L::regclass, interval %L,'
                           ' if_not_exists => true)',
                           ext, format('%I.%I', own, 'raw_price_data'), '30 days');
        EXCEPTION WHEN OTHERS THEN
            RAISE NOTICE 'cryptoctl: TimescaleDB retention policy not available: %', SQLERRM;
        END;
    END IF;
END
$$;
