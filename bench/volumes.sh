#!/usr/bin/env bash
# Block storage benchmark: I/O of each volume tier inside a real tiny guest (TCG here) beside
# the same tool and fio on the host's disk, and attach/detach latency. Prints tables; not
# part of the test suite. Extra arguments go to volume-bench (--secs N, --image PATH).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v fio >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends fio >/dev/null
}
scripts/install-deps
scripts/build-tiny-image
# The host side runs the very tool the guest runs.
gcc -static -O2 -s -o target/stratus-io images/tiny/io.c
cargo build --release --locked -p stratus-bench --bin volume-bench
target/release/volume-bench --io target/stratus-io "$@"
