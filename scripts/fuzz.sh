#!/usr/bin/env bash
# Builds the `decode` fuzz target (fuzz/fuzz_targets/decode.rs) with libFuzzer and
# runs it for SECONDS (default 60) on a copy of the seed corpus and the regression
# inputs, with the dictionary fuzz/decode.dict. Needs neither cargo-fuzz nor a nightly toolchain: it passes the flags
# `cargo fuzz build -s none` passes (SanitizerCoverage via LLVM, which stable rustc
# accepts), plus debug assertions and overflow checks. Exits non-zero on a crash,
# naming and printing the crashing input (kept in fuzz/artifacts/decode/).
#
#   scripts/fuzz.sh [SECONDS]      # e.g. scripts/fuzz.sh 600
#
# Developers with cargo-fuzz can run the same target with `cargo fuzz run decode`
# (that one grows fuzz/corpus/decode/, whose new files git ignores).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
seconds="${1:-60}"
# (0 would mean "no limit" to libFuzzer.)
case "$seconds" in '' | 0 | *[!0-9]*) echo "usage: $0 [SECONDS>0]" >&2; exit 2 ;; esac

fuzz="$root/fuzz"
triple="$(rustc -vV | sed -n 's/^host: //p')"
target_dir="$fuzz/target"
bin="$target_dir/$triple/release/decode"
artifacts="$fuzz/artifacts/decode"

# `--target` keeps these flags off build scripts and proc macros, which are not
# linked against libFuzzer. One codegen unit, as cargo-fuzz does in release mode:
# the sancov pass otherwise blocks ThinLTO's inlining and runs are ~3x slower.
export RUSTFLAGS="-Cpasses=sancov-module \
  -Cllvm-args=-sanitizer-coverage-level=4 \
  -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
  -Cllvm-args=-sanitizer-coverage-pc-table \
  -Cllvm-args=-sanitizer-coverage-trace-compares \
  -Cllvm-args=-sanitizer-coverage-stack-depth \
  -Cllvm-args=-simplifycfg-branch-fold-threshold=0 \
  --cfg fuzzing -Clink-dead-code -Ccodegen-units=1 \
  -Cdebug-assertions -Coverflow-checks=on"
started=$(date +%s)
cargo build --locked --release --manifest-path "$fuzz/Cargo.toml" \
  --target "$triple" --target-dir "$target_dir" --bin decode
echo "fuzz: built $bin in $(($(date +%s) - started)) s" >&2

# libFuzzer adds what it finds to its first folder: a scratch copy, so the
# committed seeds never grow.
work="$(mktemp -d)"
before="$(mktemp)"
trap 'rm -rf "$work" "$before"' EXIT
cp "$fuzz/corpus/decode/"* "$work/"
if compgen -G "$fuzz/regressions/*" >/dev/null; then
  cp "$fuzz/regressions/"* "$work/"
fi
mkdir -p "$artifacts"
ls -A "$artifacts" >"$before"

# 64 KiB inputs reach every decode path (the host's frame limit is 1 MiB); a single
# input slower than 30 s is a hang and fails the run like a crash.
status=0
"$bin" "$work" \
  -max_total_time="$seconds" -max_len=65536 -timeout=30 -rss_limit_mb=2048 \
  -dict="$fuzz/decode.dict" -artifact_prefix="$artifacts/" -print_final_stats=1 ||
  status=$?

if [ "$status" -ne 0 ]; then
  echo "fuzz: FAILED (libFuzzer exit $status)" >&2
  for f in "$artifacts"/*; do
    [ -e "$f" ] || continue
    grep -qxF "$(basename "$f")" "$before" && continue
    echo "fuzz: crashing input $f ($(wc -c <"$f") bytes):" >&2
    head -c 2048 "$f" | cat -v >&2
    echo >&2
    echo "fuzz: reproduce with $bin $f" >&2
  done
  exit "$status"
fi
echo "fuzz: no crash in ${seconds} s" >&2
