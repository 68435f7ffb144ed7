#!/usr/bin/env bash
# Rebuilds every example agent in guests/ (written with the Rust guest SDK, sdk/rust,
# a member of the same workspace) into plugins/NAME@VERSION.wasm, and the test-only
# hostile agent into tests/plugins/. Deterministic: the same sources and toolchain
# give the same bytes. Uses rustup's wasm32-wasip2 target when installed, else
# Debian's rustc-web with std rebuilt for wasm32-wasip2 (see
# ../shared/GUEST-TOOLCHAIN.md and docs/agents.md).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root/guests"
target=wasm32-wasip2
out="$root/plugins"

if rustup target list --installed 2>/dev/null | grep -qx "$target"; then
  build() {
    echo "== cargo build $*" >&2
    cargo build --release --target "$target" "$@"
  }
else
  echo "rustup target $target not installed: using Debian's rustc-web (build-std)" >&2
  debs=(rustc-web cargo-web rust-web-src rust-web-llvm lld-22 wasi-libc)
  for deb in "${debs[@]}"; do
    if [ "$(dpkg-query -W -f='${Status}' "$deb" 2>/dev/null)" != "install ok installed" ]; then
      apt-get update -qq
      apt-get install -y -qq --no-install-recommends "${debs[@]}"
      break
    fi
  done
  build() {
    echo "== cargo build $*" >&2
    env PATH=/usr/lib/llvm-22/bin:/usr/bin:/bin RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc \
        RUSTC_BOOTSTRAP=1 RUSTFLAGS="-L/usr/lib/wasm32-wasi" \
        /usr/bin/cargo build --release --target "$target" -Zbuild-std=std,panic_abort "$@"
  }
fi

emit() { # crate version
  local wasm="target/$target/release/$1.wasm"
  cp "$wasm" "$out/$1@$2.wasm"
  printf '%-24s %8d bytes\n' "$1@$2.wasm" "$(stat -c %s "$out/$1@$2.wasm")"
}

build -p echo
emit echo 1.0.0
build -p echo --features v2
emit echo 2.0.0
for agent in ticker streamer sleeper spinner spender reader fetcher summarizer delegator; do
  build -p "$agent"
  emit "$agent" 1.0.0
done

# Test plugins: never bundled, used by tests/ only.
mkdir -p "$root/tests/plugins"
build -p hostile
cp "target/$target/release/hostile.wasm" "$root/tests/plugins/hostile@1.0.0.wasm"
printf '%-24s %8d bytes (tests/plugins)\n' "hostile@1.0.0.wasm" "$(stat -c %s "$root/tests/plugins/hostile@1.0.0.wasm")"
