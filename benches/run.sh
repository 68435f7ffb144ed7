#!/usr/bin/env bash
# Reruns every figure in BENCHMARKS.md. arcp-host runs in release with the SQLite
# store. The round trip is measured the same way for every runtime: the load
# generator (`arcp-host bench --url`) in its own process against a server process,
# arcp-host's and the reference Python runtime's, in the same run.
# Needs the interop virtualenv (created by `cargo test --test interop`).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -q
venv=target/tmp/interop-venv/bin/python
[ -x "$venv" ] || cargo test --locked -q --test interop
bin=./target/release/arcp-host
echo "# $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo
echo "# arcp-host in-process: plugins, round trip, cancel"
$bin bench "$@"

wait_for() { for _ in $(seq 1 300); do grep -q "listening on" "$1" && return 0; sleep 0.1; done; cat "$1"; return 1; }
data=$(mktemp -d)
$bin serve --listen 127.0.0.1:0 --data "$data" --token bench-token=bench > /tmp/arcp-ours.log 2>&1 &
ours=$!
$bin serve --listen 127.0.0.1:0 --in-memory --data "$data/mem" --token bench-token=bench > /tmp/arcp-ours-mem.log 2>&1 &
ours_mem=$!
port=$((20000 + RANDOM % 20000))
"$venv" benches/reference_runtime.py "$port" bench-token > /tmp/arcp-ref.log 2>&1 &
ref=$!
trap 'kill $ours $ours_mem $ref 2>/dev/null || true; rm -rf "$data"' EXIT
wait_for /tmp/arcp-ours.log
wait_for /tmp/arcp-ours-mem.log
wait_for /tmp/arcp-ref.log
ours_url=$(grep -o 'ws://[^ ]*' /tmp/arcp-ours.log | head -n1)
mem_url=$(grep -o 'ws://[^ ]*' /tmp/arcp-ours-mem.log | head -n1)
events=${ARCP_BENCH_EVENTS:-200000}

echo
echo "# arcp-host serve (separate process, SQLite store)"
$bin bench --url "$ours_url" --bench-token bench-token --events "$events" "$@"
echo
echo "# arcp-host serve (separate process, in-memory store)"
$bin bench --url "$mem_url" --bench-token bench-token --events "$events" "$@"
echo
echo "# reference Python runtime (agentruntimecontrolprotocol 1.1.3), same load generator"
$bin bench --url "ws://127.0.0.1:$port/arcp" --bench-token bench-token "$@"
