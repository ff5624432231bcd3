#!/usr/bin/env bash
# Identity benchmark at the issue's scale (1,000 VDCs, 20,000 users, 20,000 projects) on
# SQLite and on PostgreSQL, with nginx serving a static file as the peer measured in the
# same run. Prints one table per backend. Not part of the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v nginx >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx >/dev/null
fi
work="$(mktemp -d)"
chmod 755 "$work"
port=18099
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
cargo build --release --locked -p stratus-bench
sleep 0.5
target/release/identity-bench --nginx "http://127.0.0.1:$port/static.json" "$@"
target/release/identity-bench --nginx "http://127.0.0.1:$port/static.json" --database "$pg_url" "$@"
