#!/bin/sh
# Make the secrets compose.yaml hands to the containers, once, in ./secrets (never committed).
# Random passwords for the database owner and the application role, the connection URLs that
# use them, the audit checkpoint key and Grafana's admin password. An existing file is kept.
#
# The folder is 0700 (only its owner on this server can open it); the files are 0644 because
# compose bind-mounts them into containers whose processes run as other users (ecgwl, 10001;
# postgres), and the folder's mode is what protects them on the host.
set -eu
cd "$(dirname "$0")"
umask 077
mkdir -p secrets
chmod 0700 secrets

random_hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }

keep_or_write() {  # NAME VALUE
    if [ ! -s "secrets/$1" ]; then
        printf '%s' "$2" > "secrets/$1"
        echo "wrote secrets/$1"
    fi
    chmod 0644 "secrets/$1"
}

keep_or_write postgres_owner_password "$(random_hex 24)"
keep_or_write postgres_app_password "$(random_hex 24)"
keep_or_write ecgwl_owner_database_url \
    "postgresql+psycopg://ecgwl:$(cat secrets/postgres_owner_password)@postgres:5432/ecgworklist"
keep_or_write ecgwl_database_url \
    "postgresql+psycopg://ecgwl_app:$(cat secrets/postgres_app_password)@postgres:5432/ecgworklist"
keep_or_write ecgwl_audit_checkpoint_key "$(random_hex 32)"
keep_or_write grafana_admin_password "$(random_hex 16)"
