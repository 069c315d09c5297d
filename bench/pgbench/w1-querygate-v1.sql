-- W1 as querygate 1 sent a /query (no session audit): see w1-querygate.sql.
\set id random(1, 100000)
\startpipeline
BEGIN READ ONLY;
SELECT id, name, city, status, rating FROM restaurants WHERE id = :id;
ROLLBACK;
\endpipeline
