-- The two PostgreSQL roles of a fleet with one console (docs/fleet.md, "One console for the fleet"):
--
--   tollgate_sender   the instances' audit.postgres.dsn: creates and migrates Tollgate's tables in
--                     the schema tollgate, and sends the records (COPY, INSERT … ON CONFLICT DO
--                     NOTHING through a temporary table, DELETE for keep_days)
--   tollgate_console  the console's console.postgres_dsn: reads the records and the schema's
--                     versions, and writes its own tables, which it makes the first time: its
--                     access log (tollgate_console_access), the sessions and sign-ins under
--                     way every replica shares (tollgate_console_sessions,
--                     tollgate_console_sign_ins), and how far it checked the chain
--                     (tollgate_verified, which `tollgate audit verify --postgres` writes too);
--                     it can change no record
--
-- Run it once per database, as a superuser or the database's owner with CREATEROLE (a managed
-- service's admin user), with psql, the two passwords given as variables; running it again sets
-- them again:
--
--   psql "postgresql://admin@db.internal:5432/tollgate?sslmode=require" -v ON_ERROR_STOP=1 \
--        -v sender_password="$SENDER_PASSWORD" -v console_password="$CONSOLE_PASSWORD" \
--        -f deploy/postgres-roles.sql
--
-- Each role's search_path is the schema tollgate, so the names Tollgate uses unqualified
-- (tollgate_records, tollgate_schema, tollgate_console_access, tollgate_verified) are its tables there.

\set ON_ERROR_STOP on
SET client_min_messages = warning;   -- no notice for what is there already

SELECT 'CREATE ROLE tollgate_sender' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tollgate_sender')
\gexec
SELECT 'CREATE ROLE tollgate_console' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tollgate_console')
\gexec
ALTER ROLE tollgate_sender WITH LOGIN PASSWORD :'sender_password';
ALTER ROLE tollgate_console WITH LOGIN PASSWORD :'console_password';
ALTER ROLE tollgate_sender SET search_path = tollgate;
ALTER ROLE tollgate_console SET search_path = tollgate;
-- An admin that is not a superuser (a managed service's) gives tables to the sender and says what
-- may be read of the tables it makes as a member of it.
SELECT format('GRANT tollgate_sender TO %I', current_user) WHERE NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
\gexec

-- The database: both connect; the sender makes its temporary table for a batch (tollgate_incoming).
GRANT CONNECT, TEMPORARY ON DATABASE :"DBNAME" TO tollgate_sender;
GRANT CONNECT ON DATABASE :"DBNAME" TO tollgate_console;

-- The schema: the sender creates Tollgate's tables in it; the console creates its own only.
CREATE SCHEMA IF NOT EXISTS tollgate;
REVOKE ALL ON SCHEMA tollgate FROM PUBLIC;
GRANT USAGE, CREATE ON SCHEMA tollgate TO tollgate_sender;
GRANT USAGE, CREATE ON SCHEMA tollgate TO tollgate_console;

-- tollgate_schema (a version per table), made here so that it is the sender's whichever role
-- starts first; the same definition Tollgate makes when it is missing. The console may read every
-- row, and write the rows of its own tables only (row-level security): it can never mark the
-- records' table as another version.
CREATE TABLE IF NOT EXISTS tollgate.tollgate_schema (name text PRIMARY KEY, version integer NOT NULL);
ALTER TABLE tollgate.tollgate_schema OWNER TO tollgate_sender;
REVOKE ALL ON tollgate.tollgate_schema FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE ON tollgate.tollgate_schema TO tollgate_console;
ALTER TABLE tollgate.tollgate_schema ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS console_reads ON tollgate.tollgate_schema;
DROP POLICY IF EXISTS console_adds_its_own ON tollgate.tollgate_schema;
DROP POLICY IF EXISTS console_changes_its_own ON tollgate.tollgate_schema;
CREATE POLICY console_reads ON tollgate.tollgate_schema FOR SELECT TO tollgate_console USING (true);
CREATE POLICY console_adds_its_own ON tollgate.tollgate_schema FOR INSERT TO tollgate_console
    WITH CHECK (name IN ('tollgate_console_access', 'tollgate_console_sessions', 'tollgate_verified'));
CREATE POLICY console_changes_its_own ON tollgate.tollgate_schema FOR UPDATE TO tollgate_console
    USING (name IN ('tollgate_console_access', 'tollgate_console_sessions', 'tollgate_verified'))
    WITH CHECK (name IN ('tollgate_console_access', 'tollgate_console_sessions', 'tollgate_verified'));

-- The records: the tables the sender makes (tollgate_records, and any a later version adds) are
-- readable by the console, and by no one else; those already there (this file run again) too.
ALTER DEFAULT PRIVILEGES FOR ROLE tollgate_sender IN SCHEMA tollgate REVOKE ALL ON TABLES FROM PUBLIC;
ALTER DEFAULT PRIVILEGES FOR ROLE tollgate_sender IN SCHEMA tollgate GRANT SELECT ON TABLES TO tollgate_console;
SELECT format('GRANT SELECT ON tollgate.%I TO tollgate_console', tablename)
  FROM pg_tables WHERE schemaname = 'tollgate' AND tableowner = 'tollgate_sender'
\gexec
