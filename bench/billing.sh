#!/usr/bin/env bash
# Billing benchmark: rating throughput and the monthly bill over 10,000 instances × 30 days
# of hourly usage records, beside the sqlite3 shell doing the same work in one statement
# each on the same file. Not part of the test suite. Extra arguments go to billing-bench
# (--instances N, --days N, --meters 1..3). Needs ~5 GB of free disk at full scale.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v sqlite3 >/dev/null || apt-get install -y sqlite3
cargo build --release --locked -p stratus-bench --bin billing-bench
target/release/billing-bench "$@"
