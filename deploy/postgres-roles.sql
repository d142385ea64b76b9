-- The three PostgreSQL roles of a fleet with one console (docs/fleet.md, "One console for the fleet"):
--
--   tollgate_owner    makes and migrates Tollgate's tables in the schema tollgate (`tollgate audit
--                     migrate`, run with its DSN at each upgrade): it owns them, and the triggers
--                     that keep the views' sums, which run as it
--   tollgate_sender   the instances' audit.postgres.dsn: sends the records (COPY, INSERT … ON
--                     CONFLICT DO NOTHING through a temporary table, DELETE for keep_days); it can
--                     update no row, write no sum, and change no table or trigger
--   tollgate_console  the console's console.postgres_dsn: reads the records, their sums and the
--                     schema's versions, and writes its own tables, which it makes the first time:
--                     its access log (tollgate_console_access), the sessions and sign-ins under
--                     way every replica shares (tollgate_console_sessions,
--                     tollgate_console_sign_ins), and how far it checked the chain
--                     (tollgate_verified, which `tollgate audit verify --postgres` writes too);
--                     it can change no record
--
-- Run it once per database, as a superuser or the database's owner with CREATEROLE (a managed
-- service's admin user), with psql, the three passwords given as variables; running it again sets
-- them again, and gives the tables a sender made (before the owner was) to the owner:
--
--   psql "postgresql://admin@db.internal:5432/tollgate?sslmode=require" -v ON_ERROR_STOP=1 \
--        -v owner_password="$OWNER_PASSWORD" -v sender_password="$SENDER_PASSWORD" \
--        -v console_password="$CONSOLE_PASSWORD" -f deploy/postgres-roles.sql
--
-- Each role's search_path is the schema tollgate, so the names Tollgate uses unqualified
-- (tollgate_records, tollgate_schema, tollgate_console_access, tollgate_verified) are its tables there.

\set ON_ERROR_STOP on
SET client_min_messages = warning;   -- no notice for what is there already

SELECT 'CREATE ROLE tollgate_owner' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tollgate_owner')
\gexec
SELECT 'CREATE ROLE tollgate_sender' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tollgate_sender')
\gexec
SELECT 'CREATE ROLE tollgate_console' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tollgate_console')
\gexec
ALTER ROLE tollgate_owner WITH LOGIN PASSWORD :'owner_password';
ALTER ROLE tollgate_sender WITH LOGIN PASSWORD :'sender_password';
ALTER ROLE tollgate_console WITH LOGIN PASSWORD :'console_password';
ALTER ROLE tollgate_owner SET search_path = tollgate;
ALTER ROLE tollgate_sender SET search_path = tollgate;
ALTER ROLE tollgate_console SET search_path = tollgate;
-- An admin that is not a superuser (a managed service's) gives tables to the owner, takes them from
-- the sender, and says what may be read of the tables the owner makes, as a member of both.
SELECT format('GRANT tollgate_owner, tollgate_sender TO %I', current_user)
 WHERE NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
\gexec

-- The database: each connects; the sender makes its temporary table for a batch (tollgate_incoming),
-- the console its own to sum a day again (the Audit view's check of the sums).
GRANT CONNECT ON DATABASE :"DBNAME" TO tollgate_owner;
GRANT CONNECT, TEMPORARY ON DATABASE :"DBNAME" TO tollgate_sender;
GRANT CONNECT, TEMPORARY ON DATABASE :"DBNAME" TO tollgate_console;

-- The schema: the owner creates Tollgate's tables in it; the console its own only; the sender
-- nothing.
CREATE SCHEMA IF NOT EXISTS tollgate;
REVOKE ALL ON SCHEMA tollgate FROM PUBLIC;
GRANT USAGE, CREATE ON SCHEMA tollgate TO tollgate_owner;
REVOKE CREATE ON SCHEMA tollgate FROM tollgate_sender;
GRANT USAGE ON SCHEMA tollgate TO tollgate_sender;
GRANT USAGE, CREATE ON SCHEMA tollgate TO tollgate_console;
-- What a sender made before there was an owner (its tables, their sequences) is the owner's now.
REASSIGN OWNED BY tollgate_sender TO tollgate_owner;

-- tollgate_schema (a version per table), made here so that it is the owner's whichever role
-- starts first; the same definition Tollgate makes when it is missing. The sender may read it; the
-- console may read every row, and write the rows of its own tables only (row-level security): neither
-- can ever mark the records' table as another version.
CREATE TABLE IF NOT EXISTS tollgate.tollgate_schema (name text PRIMARY KEY, version integer NOT NULL);
ALTER TABLE tollgate.tollgate_schema OWNER TO tollgate_owner;
REVOKE ALL ON tollgate.tollgate_schema FROM PUBLIC;
REVOKE ALL ON tollgate.tollgate_schema FROM tollgate_sender;
GRANT SELECT ON tollgate.tollgate_schema TO tollgate_sender;
GRANT SELECT, INSERT, UPDATE ON tollgate.tollgate_schema TO tollgate_console;
ALTER TABLE tollgate.tollgate_schema ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS sender_reads ON tollgate.tollgate_schema;
DROP POLICY IF EXISTS console_reads ON tollgate.tollgate_schema;
DROP POLICY IF EXISTS console_adds_its_own ON tollgate.tollgate_schema;
DROP POLICY IF EXISTS console_changes_its_own ON tollgate.tollgate_schema;
CREATE POLICY sender_reads ON tollgate.tollgate_schema FOR SELECT TO tollgate_sender USING (true);
CREATE POLICY console_reads ON tollgate.tollgate_schema FOR SELECT TO tollgate_console USING (true);
CREATE POLICY console_adds_its_own ON tollgate.tollgate_schema FOR INSERT TO tollgate_console
    WITH CHECK (name IN ('tollgate_console_access', 'tollgate_console_sessions', 'tollgate_verified'));
CREATE POLICY console_changes_its_own ON tollgate.tollgate_schema FOR UPDATE TO tollgate_console
    USING (name IN ('tollgate_console_access', 'tollgate_console_sessions', 'tollgate_verified'))
    WITH CHECK (name IN ('tollgate_console_access', 'tollgate_console_sessions', 'tollgate_verified'));

-- The records: the tables the owner makes (tollgate_records, and any a later version adds) are
-- readable by the console and the sender, and by no one else; the sender may insert and delete
-- rows, never update one. A migration takes from every role but the owner all but SELECT on the
-- tables of the sums (the owner's triggers write them). Those there already (this file run again)
-- too: the records' tables are the ones named in tollgate_schema.
ALTER DEFAULT PRIVILEGES FOR ROLE tollgate_owner IN SCHEMA tollgate REVOKE ALL ON TABLES FROM PUBLIC;
ALTER DEFAULT PRIVILEGES FOR ROLE tollgate_owner IN SCHEMA tollgate GRANT SELECT ON TABLES TO tollgate_console;
ALTER DEFAULT PRIVILEGES FOR ROLE tollgate_owner IN SCHEMA tollgate GRANT SELECT, INSERT, DELETE ON TABLES TO tollgate_sender;
ALTER DEFAULT PRIVILEGES FOR ROLE tollgate_owner IN SCHEMA tollgate GRANT USAGE ON SEQUENCES TO tollgate_sender;
SELECT format('GRANT SELECT ON tollgate.%I TO tollgate_console, tollgate_sender', tablename)
  FROM pg_tables WHERE schemaname = 'tollgate' AND tableowner = 'tollgate_owner' AND tablename <> 'tollgate_schema'
\gexec
SELECT format('REVOKE UPDATE, TRUNCATE, REFERENCES, TRIGGER ON tollgate.%I FROM tollgate_sender', t.tablename),
       format('GRANT INSERT, DELETE ON tollgate.%I TO tollgate_sender', t.tablename)
  FROM pg_tables AS t JOIN tollgate.tollgate_schema AS s ON s.name = t.tablename
 WHERE t.schemaname = 'tollgate' AND t.tableowner = 'tollgate_owner'
\gexec
SELECT format('GRANT USAGE ON SEQUENCE tollgate.%I TO tollgate_sender', sequencename)
  FROM pg_sequences WHERE schemaname = 'tollgate' AND sequenceowner = 'tollgate_owner'
\gexec
