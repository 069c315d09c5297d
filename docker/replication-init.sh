#!/bin/sh
# Run once by the postgres image on the primary's first start (mounted into
# /docker-entrypoint-initdb.d by docker/compose.replicas.yaml): a login for the streaming
# replica, a slot that keeps the WAL it has not received yet, and a pg_hba line that lets
# it connect. The image's own pg_hba line ("host all all all") does not cover
# replication connections.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
     --set pw="$REPLICATION_PASSWORD" <<'SQL'
CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD :'pw';
SELECT pg_create_physical_replication_slot('replica1');
SQL
echo "host replication replicator all scram-sha-256" >> "$PGDATA/pg_hba.conf"
