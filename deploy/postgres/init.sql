-- FieldLoop: the role and database central uses, and TimescaleDB where it is available.
--
-- Run once, as a PostgreSQL superuser, with psql (the file uses psql's \if, \getenv, \gexec):
--
--   same host, no password (central runs as the OS user fieldloop and signs in over the
--   Unix socket with peer authentication; FIELDLOOP_DB_URL=postgresql://fieldloop@/fieldloop?host=/var/run/postgresql):
--     sudo -u postgres psql -f deploy/postgres/init.sql
--
--   with a password (central on another host, or in a container):
--     sudo -u postgres env FIELDLOOP_DB_PASSWORD="$(cat /root/fieldloop-db-password)" \
--         psql -f deploy/postgres/init.sql
--   (psql 14 and older have no \getenv: pass -v fieldloop_password=... instead, which shows
--   the password to `ps`). The compose file runs this file at the database's first start with
--   FIELDLOOP_DB_PASSWORD from deploy/compose/.env.
--
-- The password is never written in this file or in the repository. Running the file again
-- changes nothing that exists: it creates the role and the database only when they are
-- missing (to change the password later: ALTER ROLE fieldloop PASSWORD ..., or \password).
--
-- The schema is not created here: central runs FieldLoop's Alembic migrations
-- (central/migrations) when it starts, with FIELDLOOP_MIGRATE_ON_START=true (the default).
-- With several central processes, or to migrate before starting a new version, see
-- "Upgrades" in deploy/README.md.

\set ON_ERROR_STOP on

-- The password: psql -v fieldloop_password=..., else the environment's FIELDLOOP_DB_PASSWORD.
\if :{?fieldloop_password}
\else
  \getenv fieldloop_password FIELDLOOP_DB_PASSWORD
\endif

SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = 'fieldloop') AS fieldloop_role_exists \gset
\if :fieldloop_role_exists
  \echo 'fieldloop: the role fieldloop exists; left as it is'
\elif :{?fieldloop_password}
  SELECT format('CREATE ROLE fieldloop LOGIN PASSWORD %L', :'fieldloop_password') \gexec
\else
  CREATE ROLE fieldloop LOGIN;
  \echo 'fieldloop: no password given: the role fieldloop can sign in only where pg_hba.conf allows peer authentication'
\endif

-- UTF-8 whatever the cluster's default: tickets, labels and rules carry Chinese text.
-- The database owner may create tables in its public schema, which the migrations need.
SELECT 'CREATE DATABASE fieldloop OWNER fieldloop ENCODING ''UTF8'' TEMPLATE template0'
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'fieldloop') \gexec

\connect fieldloop

-- TimescaleDB only where the server has it: the package installed (pg_available_extensions)
-- and the library preloaded (shared_preload_libraries, which timescaledb-tune sets; without
-- it CREATE EXTENSION fails). Elsewhere FieldLoop runs on plain PostgreSQL.
--
-- The extension is created here, as a superuser, because the fieldloop role may not create it
-- (it is not a trusted extension). Central's migration 0009 then finds it and makes
-- telemetry_samples a hypertable with compression, retention and continuous aggregates (its
-- log says "telemetry store: TimescaleDB ... hypertable" at start). Without it: daily
-- PostgreSQL partitions. Create the extension BEFORE central's first start: the layout is
-- chosen once, when migration 0009 runs.
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_available_extensions WHERE name = 'timescaledb') THEN
    RAISE NOTICE 'fieldloop: TimescaleDB is not installed on this server; plain PostgreSQL it is';
  ELSIF current_setting('shared_preload_libraries') NOT LIKE '%timescaledb%' THEN
    RAISE WARNING 'fieldloop: TimescaleDB is installed but not in shared_preload_libraries; '
      'run timescaledb-tune (or add it by hand), restart PostgreSQL and run this file again';
  ELSE
    CREATE EXTENSION IF NOT EXISTS timescaledb;
    RAISE NOTICE 'fieldloop: TimescaleDB extension present in database fieldloop';
  END IF;
END
$$;
