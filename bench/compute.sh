#!/usr/bin/env bash
# Compute benchmark: 10,000 instances on 100 simulated hosts (SQLite and PostgreSQL) and real
# tiny-guest boots against raw qemu-system, with nginx serving a static file as the HTTP peer
# measured in the same run. Prints one table per measurement. Not part of the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v nginx >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx >/dev/null
fi
work="$(mktemp -d)"
chmod 755 "$work"
port=18098
echo '{"items":[],"next":null}' > "$work/static.json"
cat > "$work/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/nginx.pid;
error_log $work/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  server {
    listen 127.0.0.1:$port;
    location / { root $work; default_type application/json; }
  }
}
CONF
nginx -c "$work/nginx.conf" & nginx_pid=$!
pg_url="$(scripts/test-postgres start)"
trap 'kill $nginx_pid 2>/dev/null || true; scripts/test-postgres stop; rm -rf "$work"' EXIT
scripts/build-tiny-image
cargo build --release --locked -p stratus-bench
sleep 0.5
target/release/compute-bench --nginx "http://127.0.0.1:$port/static.json" "$@"
target/release/compute-bench --nginx "http://127.0.0.1:$port/static.json" --database "$pg_url" --boots 0 "$@"
