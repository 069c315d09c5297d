-- The embedded database's demo table (created once; kept across runs; scripts/run --reset
-- drops it, and anything else querygate's login created, before this runs again).
SET ROLE qg;
SET client_min_messages = warning;
CREATE TABLE IF NOT EXISTS restaurants (
  id         serial PRIMARY KEY,
  name       text NOT NULL,
  city       text NOT NULL,
  status     text NOT NULL DEFAULT 'active',
  rating     numeric(3,1),
  created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO restaurants (name, city, rating)
SELECT v.name, v.city, v.rating
FROM (VALUES ('Blue Door', 'Miami', 4.5), ('Casa Roja', 'Austin', 4.1),
             ('Golden Wok', 'Seattle', 3.9), ('Le Petit', 'Boston', 4.7),
             ('Sea Salt', 'Miami', 4.2)) AS v(name, city, rating)
WHERE NOT EXISTS (SELECT 1 FROM restaurants);
