#!/usr/bin/env bash
# Compares two builds of arcp-host on the same machine, alternating them so that drift
# of a shared machine falls on both: each run starts `serve` (SQLite store in a fresh
# folder, or `--in-memory`), drives it with the load generator of the second binary
# (`arcp-host bench --url URL --pid PID ...`) and stops it.
#
#   benches/ab.sh OLD NEW [--in-memory] [--rounds N] -- BENCH_ARGS...
#   e.g. cp target/release/arcp-host /tmp/old; (change, cargo build --release)
#        benches/ab.sh /tmp/old target/release/arcp-host -- --round-trips 5000 --events 200000
set -euo pipefail
[ $# -ge 2 ] || { sed -n 2,10p "$0"; exit 2; }
old=$1 new=$2
shift 2
store=() rounds=2
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
    case $1 in
        --in-memory) store=(--in-memory) ;;
        --rounds) rounds=$2; shift ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
[ "${1:-}" = "--" ] && shift
work=$(mktemp -d)
server=""
trap '[ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$work"' EXIT
once() {
    local bin=$1 data="$work/data-$RANDOM" log="$work/serve.log"
    shift
    [ ${#store[@]} -gt 0 ] || store=(--data "$data")
    ARCP_LOG=warn "$bin" serve --listen 127.0.0.1:0 "${store[@]}" --token ab=ab > "$log" 2>&1 &
    server=$!
    for _ in $(seq 1 500); do grep -q "listening on" "$log" && break; sleep 0.01; done
    local url
    url=$(grep -o 'ws://[^ ]*' "$log" | head -n1)
    "$new" bench --url "$url" --bench-token ab --pid "$server" --cancels 0 "$@" \
        | grep -E "p50=|events/s|jobs/s|CPU"
    kill "$server"; wait "$server" 2>/dev/null || true
    server=""
    [ "${store[0]}" = "--in-memory" ] || store=()
}
for round in $(seq 1 "$rounds"); do
    echo "== round $round: A ($old)"; once "$old" "$@"
    echo "== round $round: B ($new)"; once "$new" "$@"
done
