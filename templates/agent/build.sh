#!/usr/bin/env bash
# Builds this agent into a WebAssembly component, NAME@VERSION.wasm beside this
# script (the version is Cargo.toml's), ready to drop into arcp-host's plugins/.
# Uses rustup's wasm32-wasip2 target when installed, else Debian's rustc-web with std
# rebuilt for wasm32-wasip2 (see docs/agents.md in arcp-host).
set -euo pipefail
cd "$(dirname "$0")"
name="{{name}}"
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
target=wasm32-wasip2

if rustup target list --installed 2>/dev/null | grep -qx "$target"; then
  cargo build --release --target "$target"
elif [ -x /usr/bin/rustc ] && [ -d /usr/lib/wasm32-wasi ] && [ -x /usr/lib/llvm-22/bin/wasm-ld ]; then
  env PATH=/usr/lib/llvm-22/bin:/usr/bin:/bin RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc \
    RUSTC_BOOTSTRAP=1 RUSTFLAGS="-L/usr/lib/wasm32-wasi" \
    /usr/bin/cargo build --release --target "$target" -Zbuild-std=std,panic_abort
else
  echo "no $target toolchain: run 'rustup target add $target', or on Debian" >&2
  echo "'apt-get install rustc-web cargo-web rust-web-src rust-web-llvm lld-22 wasi-libc'" >&2
  exit 1
fi

out="$name@$version.wasm"
cp "${CARGO_TARGET_DIR:-target}/$target/release/${name//-/_}.wasm" "$out"
echo "built $PWD/$out ($(stat -c %s "$out") bytes)"
