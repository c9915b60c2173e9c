-- cryptoctl storage schema. Applied idempotently by `cryptoctl up` and `cryptoctl db init`
-- into the schema named by `search_path` (setting db_schema, default "public").
-- Runs unchanged on plain PostgreSQL 15+; uses TimescaleDB hypertables when the extension
-- is installed. Applying it twice changes nothing.

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
    extra            jsonb
);
CREATE INDEX IF NOT EXISTS raw_price_data_symbol_time_idx ON raw_price_data (symbol, time DESC);

-- One-minute event-time candles. Full state is stored (sums, open/close event times), so
-- a consumer that takes over a partition continues a candle exactly where it was left.
CREATE TABLE IF NOT EXISTS price_aggregates_1m (
    symbol           text NOT NULL,
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
    PRIMARY KEY (symbol, bucket)
);
CREATE INDEX IF NOT EXISTS price_aggregates_1m_open_idx
    ON price_aggregates_1m (kafka_partition, bucket) WHERE NOT final;

-- Ticks that arrived after their window was final: recorded, never silently lost.
CREATE TABLE IF NOT EXISTS late_ticks (
    time             timestamptz NOT NULL,
    symbol           text NOT NULL,
    price            double precision NOT NULL,
    qty              double precision,
    kafka_partition  integer NOT NULL,
    kafka_offset     bigint NOT NULL,
    watermark        timestamptz NOT NULL,
    lateness_ms      bigint NOT NULL,               -- how far behind the watermark it was
    recorded_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS late_ticks_symbol_time_idx ON late_ticks (symbol, time DESC);

CREATE TABLE IF NOT EXISTS price_alerts (
    id            bigserial PRIMARY KEY,
    symbol        text NOT NULL,
    condition     text NOT NULL CHECK (condition IN ('above', 'below')),
    threshold     double precision NOT NULL CHECK (threshold > 0),
    active        boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now(),
    triggered_at  timestamptz
);

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
    updated_at       timestamptz NOT NULL DEFAULT now(),
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

-- Latest price per symbol, from the newest candle (present whether or not raw ticks are kept).
CREATE OR REPLACE VIEW v_latest_prices AS
SELECT DISTINCT ON (symbol)
       symbol, close AS price, close_time AS time, bucket, final
FROM price_aggregates_1m
ORDER BY symbol, bucket DESC;

-- 24-hour statistics per symbol from the 1-minute candles of the last 24 hours.
CREATE OR REPLACE VIEW v_price_stats_24h AS
SELECT symbol,
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
GROUP BY symbol;

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
