#!/bin/sh
# Run once by the postgres image when the database is first created (docker-entrypoint-initdb.d):
# the application's own role, which does not own the tables. The migrations run as the owner
# (POSTGRES_USER, `migrate`); every table and sequence they make is usable by ecgwl_app, which
# cannot ALTER or DROP them, so it cannot drop the audit table's append-only trigger either.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
     -v app_password="$(cat /run/secrets/postgres_app_password)" \
     -v app_role=ecgwl_app -v owner="$POSTGRES_USER" -v database="$POSTGRES_DB" \
     -f /docker-entrypoint-initdb.d/roles.sql.in
