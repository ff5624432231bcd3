#!/usr/bin/env bash
# Compute benchmark: 10,000 instances on 100 simulated hosts (SQLite and PostgreSQL) and real
# tiny-guest boots against raw qemu-system, with nginx serving a static file as the HTTP peer
# measured in the same run. Prints one table per measurement. Not part of the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
peer_port=18098
source bench/nginx-peer.sh
pg_url="$(scripts/test-postgres start)"
trap 'kill $nginx_pid 2>/dev/null || true; scripts/test-postgres stop; rm -rf "$work"' EXIT
scripts/build-tiny-image
cargo build --release --locked -p stratus-bench
sleep 0.5
target/release/compute-bench --nginx "$nginx_url" "$@"
target/release/compute-bench --nginx "$nginx_url" --database "$pg_url" --boots 0 "$@"
