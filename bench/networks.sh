#!/usr/bin/env bash
# Networking benchmark: throughput and latency across the data path the agent builds (subnet
# bridge + security groups, and through the VPC router) beside a plain veth pair in the same
# run, and the time to apply security-group changes up to a 1,000-rule group. Needs root
# (namespaces, nftables). Prints tables; not part of the test suite. Extra arguments go to
# network-bench (--secs N).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v iperf3 >/dev/null && command -v ping >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends iperf3 iputils-ping >/dev/null
}
scripts/install-deps
cargo build --release --locked -p stratus-bench --bin network-bench
target/release/network-bench "$@"
