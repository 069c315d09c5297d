-- W3 as querygate 1 sent a one-statement /update (see w3-querygate.sql).
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
SELECT pg_advisory_unlock_all();
DISCARD TEMP;
\endpipeline
