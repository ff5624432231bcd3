#!/usr/bin/env bash
# Identity benchmark at the issue's scale (1,000 VDCs, 20,000 users, 20,000 projects) on
# SQLite and on PostgreSQL, with nginx serving a static file as the peer measured in the
# same run. Prints one table per backend. Not part of the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
peer_port=18099
source bench/nginx-peer.sh
pg_url="$(scripts/test-postgres start)"
trap 'kill $nginx_pid 2>/dev/null || true; scripts/test-postgres stop; rm -rf "$work"' EXIT
cargo build --release --locked -p stratus-bench
sleep 0.5
target/release/identity-bench --nginx "$nginx_url" "$@"
target/release/identity-bench --nginx "$nginx_url" --database "$pg_url" "$@"
