-- FieldLoop: delete telemetry older than a retention period (plain PostgreSQL).
--
-- Central keeps every telemetry sample for ever; nothing in it deletes them. Run this daily,
-- off-peak, as the fieldloop role (or any role that may delete from its tables):
--
--   sudo -u fieldloop psql -d fieldloop -v keep='90 days' -f deploy/postgres/retention.sql
--   (elsewhere: psql "postgresql://fieldloop@db-host/fieldloop" -v keep='90 days' -f ...,
--   with the password in ~/.pgpass; psql does not take the +psycopg form of FIELDLOOP_DB_URL)
--
-- e.g. from a systemd timer or cron. keep is a PostgreSQL interval; default 90 days.
--
-- What it deletes, in chunks of 50,000 rows with a commit after each (no long lock, no huge
-- transaction):
--   1. telemetry_samples whose time (the edge's reading time) is older than now - keep;
--   2. telemetry_batches received before now - keep that no longer have samples. These rows
--      are central's inbox of batch ids: a batch sent again after its row is gone would be
--      stored again. No edge holds a batch that long unacked unless it was cut off for the
--      whole retention period, so keep a period well above the longest outage you expect.
--
-- Cost: telemetry_samples has no index on time alone (only asset, metric, time), so the last
-- chunk of each run reads the whole table. The lasting fix is time partitioning (a
-- TimescaleDB hypertable with add_retention_policy, or PostgreSQL range partitions dropped
-- whole), which needs a FieldLoop migration: see deploy/README.md, "Retention".
--
-- Not run inside a transaction block: the DO block commits as it goes (PostgreSQL 11+).

\set ON_ERROR_STOP on
\if :{?keep}
\else
  \set keep '90 days'
\endif
SELECT set_config('fieldloop.keep', :'keep', false) AS keep;

DO $$
DECLARE
  cutoff timestamptz := now() - current_setting('fieldloop.keep')::interval;
  chunk constant int := 50000;
  n bigint;
  total bigint := 0;
BEGIN
  LOOP
    DELETE FROM telemetry_samples
     WHERE id IN (SELECT id FROM telemetry_samples WHERE "time" < cutoff LIMIT chunk);
    GET DIAGNOSTICS n = ROW_COUNT;
    total := total + n;
    COMMIT;
    EXIT WHEN n < chunk;
  END LOOP;
  RAISE NOTICE 'fieldloop: deleted % telemetry sample(s) older than %', total, cutoff;

  total := 0;
  LOOP
    DELETE FROM telemetry_batches
     WHERE id IN (
       SELECT b.id FROM telemetry_batches b
        WHERE b.received_at < cutoff
          AND NOT EXISTS (SELECT 1 FROM telemetry_samples s WHERE s.batch_id = b.id)
        LIMIT chunk);
    GET DIAGNOSTICS n = ROW_COUNT;
    total := total + n;
    COMMIT;
    EXIT WHEN n < chunk;
  END LOOP;
  RAISE NOTICE 'fieldloop: deleted % telemetry batch id(s) received before %', total, cutoff;
END
$$;
