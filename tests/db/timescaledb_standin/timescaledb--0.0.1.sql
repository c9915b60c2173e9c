-- cryptoctl test stand-in for TimescaleDB (see timescaledb.control).
\echo Use "CREATE EXTENSION timescaledb" to load this file. \quit

-- Every call of an extension function, with the table it was given, fully qualified.
CREATE TABLE @extschema@.standin_calls (
    id               serial PRIMARY KEY,
    function         name NOT NULL,
    relation_schema  name NOT NULL,
    relation_name    name NOT NULL,
    args             jsonb NOT NULL,
    created          boolean NOT NULL
);

-- TimescaleDB 2.x signature (the "old" API that schema.sql uses).
CREATE FUNCTION @extschema@.create_hypertable(
    relation                 regclass,
    time_column_name         name,
    partitioning_column      name = NULL,
    number_partitions        integer = NULL,
    associated_schema_name   name = NULL,
    associated_table_prefix  name = NULL,
    chunk_time_interval      anyelement = NULL::bigint,
    create_default_indexes   boolean = true,
    if_not_exists            boolean = false,
    partitioning_func        regproc = NULL,
    migrate_data             boolean = false,
    chunk_target_size        text = NULL,
    chunk_sizing_func        regproc = NULL,
    time_partitioning_func   regproc = NULL
) RETURNS TABLE (hypertable_id integer, schema_name name, table_name name, created boolean)
LANGUAGE plpgsql AS $$
DECLARE
    nsp name;
    rel name;
    known boolean;
BEGIN
    SELECT n.nspname, c.relname INTO nsp, rel
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = relation;
    IF NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = relation
                   AND a.attname = time_column_name AND NOT a.attisdropped) THEN
        RAISE EXCEPTION 'column "%" does not exist', time_column_name;
    END IF;
    known := EXISTS (SELECT 1 FROM @extschema@.standin_calls k
                     WHERE k.function = 'create_hypertable' AND k.created
                       AND k.relation_schema = nsp AND k.relation_name = rel);
    IF known AND NOT if_not_exists THEN
        RAISE EXCEPTION 'table "%" is already a hypertable', rel;
    END IF;
    INSERT INTO @extschema@.standin_calls (function, relation_schema, relation_name, args, created)
    VALUES ('create_hypertable', nsp, rel,
            jsonb_build_object('time_column_name', time_column_name,
                               'chunk_time_interval', chunk_time_interval::text,
                               'if_not_exists', if_not_exists,
                               'migrate_data', migrate_data),
            NOT known);
    RETURN QUERY SELECT 1, nsp, rel, NOT known;
END
$$;

CREATE FUNCTION @extschema@.add_retention_policy(
    relation            regclass,
    drop_after          anyelement,
    if_not_exists       boolean = false,
    schedule_interval   interval = NULL,
    initial_start       timestamptz = NULL,
    timezone            text = NULL
) RETURNS integer
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO @extschema@.standin_calls (function, relation_schema, relation_name, args, created)
    SELECT 'add_retention_policy', n.nspname, c.relname,
           jsonb_build_object('drop_after', drop_after::text, 'if_not_exists', if_not_exists),
           true
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = relation;
    RETURN 1000;
END
$$;

-- Bucket start: origin + whole widths, by arithmetic on epoch seconds (not date_bin, so
-- the roll-up over it is checked against an independent implementation).
CREATE FUNCTION @extschema@.time_bucket(bucket_width interval, ts timestamptz, origin timestamptz)
RETURNS timestamptz
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT origin + make_interval(secs =>
        floor(extract(epoch FROM ts - origin) / extract(epoch FROM bucket_width))::float8
        * extract(epoch FROM bucket_width)::float8)
$$;

-- Without an origin TimescaleDB aligns to Monday 2000-01-03.
CREATE FUNCTION @extschema@.time_bucket(bucket_width interval, ts timestamptz)
RETURNS timestamptz
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT @extschema@.time_bucket(bucket_width, ts, timestamptz '2000-01-03 00:00:00+00')
$$;

-- drop_chunks: "drops" by deleting the rows before older_than (a chunk per call that found
-- any), on the time column create_hypertable was given; records the call.
CREATE FUNCTION @extschema@.drop_chunks(
    relation        regclass,
    older_than      anyelement = NULL::timestamptz,
    newer_than      anyelement = NULL::timestamptz,
    verbose         boolean = false
) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    nsp name;
    rel name;
    col name;
    n bigint;
BEGIN
    SELECT n.nspname, c.relname INTO nsp, rel
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = relation;
    SELECT k.args->>'time_column_name' INTO col FROM @extschema@.standin_calls k
     WHERE k.function = 'create_hypertable' AND k.created
       AND k.relation_schema = nsp AND k.relation_name = rel;
    IF col IS NULL THEN
        RAISE EXCEPTION 'table "%" is not a hypertable', rel;
    END IF;
    INSERT INTO @extschema@.standin_calls (function, relation_schema, relation_name, args, created)
    VALUES ('drop_chunks', nsp, rel, jsonb_build_object('older_than', older_than::text), true);
    EXECUTE format('DELETE FROM %I.%I WHERE %I < $1', nsp, rel, col) USING older_than;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        RETURN NEXT format('_timescaledb_internal._hyper_standin_%s_chunk', rel);
    END IF;
END
$$;

-- The information views cryptoctl reads, over the recorded calls.
CREATE SCHEMA timescaledb_information;
CREATE VIEW timescaledb_information.hypertables AS
    SELECT relation_schema AS hypertable_schema, relation_name AS hypertable_name
      FROM @extschema@.standin_calls WHERE function = 'create_hypertable' AND created;
CREATE VIEW timescaledb_information.jobs AS
    SELECT id AS job_id, 'policy_retention'::name AS proc_name,
           relation_schema AS hypertable_schema, relation_name AS hypertable_name,
           jsonb_build_object('drop_after', args->>'drop_after') AS config
      FROM @extschema@.standin_calls WHERE function = 'add_retention_policy';
