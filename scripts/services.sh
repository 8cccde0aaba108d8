#!/usr/bin/env bash
# Start the PostgreSQL and Redis servers the tests talk to, if they are not already up.
# Used by scripts/test.sh under CI=true. The commands are Debian's (pg_ctlcluster from the
# postgresql package, redis-server from redis-server), run as root; on other machines start
# your distribution's services before the tests.
set -uo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if ! port_open 5432; then
  echo "== starting PostgreSQL =="
  if command -v pg_ctlcluster >/dev/null; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  fi
fi
if ! port_open 6379; then
  echo "== starting Redis =="
  if command -v redis-server >/dev/null; then
    mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
  fi
fi
for _ in $(seq 1 30); do
  if port_open 5432 && port_open 6379; then exit 0; fi
  sleep 1
done
port_open 5432 || echo "PostgreSQL is NOT reachable on 127.0.0.1:5432" >&2
port_open 6379 || echo "Redis is NOT reachable on 127.0.0.1:6379" >&2
# Do not exit non-zero here: the tests that need a missing service fail with a clear message.
exit 0
