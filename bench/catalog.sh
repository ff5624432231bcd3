#!/usr/bin/env bash
# Catalog benchmark: orders (request → automatic approval → provisioning) on simulated
# hosts beside the same instances created directly, and the approver's queue over 100,000
# historical requests, on SQLite and PostgreSQL, with nginx serving a static file as the
# HTTP floor measured in the same run. Not part of the test suite. Extra arguments go to
# catalog-bench (--orders N, --hosts N, --history N).
set -euo pipefail
cd "$(dirname "$0")/.."
peer_port=18097
source bench/nginx-peer.sh
pg_url="$(scripts/test-postgres start)"
trap 'kill $nginx_pid 2>/dev/null || true; scripts/test-postgres stop; rm -rf "$work"' EXIT
cargo build --release --locked -p stratus-bench --bin catalog-bench
sleep 0.5
target/release/catalog-bench --nginx "$nginx_url" "$@"
target/release/catalog-bench --nginx "$nginx_url" --database "$pg_url" "$@"
