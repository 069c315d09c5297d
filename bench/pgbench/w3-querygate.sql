-- W3 as querygate sends a one-statement /update: BEGIN, UPDATE, COMMIT and the session
-- reset in one pipeline. Compare with bench/kit/pgbench/w3.sql, the bare UPDATE:
--   pgbench -n -M prepared -c 15 -j 2 -T 10 -f bench/pgbench/w3-querygate.sql "$DATABASE_URL"
\set id random(1, 100000)
\set s random(1, 3)
\startpipeline
BEGIN;
UPDATE restaurants SET status = (ARRAY['active','closed','pending'])[:s] WHERE id = :id;
COMMIT;
RESET SESSION AUTHORIZATION;
RESET ROLE;
RESET ALL;
UNLISTEN *;
CLOSE ALL;
DISCARD TEMP;
DISCARD SEQUENCES;
SELECT pg_catalog.pg_advisory_unlock_all(), count(*) = 0 FROM pg_catalog.pg_prepared_statement() WHERE from_sql;
\endpipeline
