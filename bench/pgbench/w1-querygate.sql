-- W1 as querygate sends a /query: BEGIN READ ONLY, the SELECT, ROLLBACK and the
-- session audit (advisory locks released, prepared statements checked) in one pipeline.
-- Compare with bench/kit/pgbench/w1.sql, the bare SELECT, and w1-querygate-v1.sql,
-- the same without the audit (before issue 10):
--   pgbench -n -M prepared -c 15 -j 2 -T 10 -f bench/pgbench/w1-querygate.sql "$DATABASE_URL"
\set id random(1, 100000)
\startpipeline
BEGIN READ ONLY;
SELECT id, name, city, status, rating FROM restaurants WHERE id = :id;
ROLLBACK;
SELECT pg_catalog.pg_advisory_unlock_all(), count(*) = 0 FROM pg_catalog.pg_prepared_statement() WHERE from_sql;
\endpipeline
