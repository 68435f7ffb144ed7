#!/usr/bin/env bash
# Builds the Python agent py-wordcount (app.py) into plugins/python/py-wordcount@1.0.0.wasm
# with componentize-py from PyPI, pinned in requirements.txt, and records what it was
# built from in BUILT (checked by tests/python_agent.rs, so that the committed component
# cannot silently drift from its source). See docs/agents.md, "Writing an agent in
# Python".
#
#   guests/python/py-wordcount/build.sh           # rebuild (about 30 s, plus a one-time
#                                                 # pip install of about 15 s)
#   guests/python/py-wordcount/build.sh --check   # only check BUILT against the files
#
# The tool lives in a virtualenv under target/tmp/ (override with VENV=DIR); it needs
# python3 with venv and PyPI, nothing else: the wheel carries CPython for wasm.
#
# componentize-py's output is not byte-reproducible (each build snapshots an
# interpreter whose hash seeds and heap layout differ), so rebuild only when app.py,
# requirements.txt or wit/ change: each rebuild commits a new ~18 MB file.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
name=py-wordcount
version=1.0.0
out_rel="plugins/python/$name@$version.wasm"
stamp="$here/BUILT"
# What the component is built from (paths relative to the repository root).
inputs=(guests/python/$name/app.py guests/python/$name/requirements.txt wit/agent.wit)

cd "$root"
if [ "${1:-}" = "--check" ]; then
  sha256sum --quiet --check "$stamp"
  echo "$out_rel matches its sources (BUILT)"
  exit 0
fi

pin="$(grep -E '^componentize-py==' "$here/requirements.txt")"
venv="${VENV:-$root/target/tmp/componentize-py-venv}"
if [ "$("$venv/bin/python" -m pip freeze 2>/dev/null | grep -i '^componentize-py==')" != "$pin" ]; then
  echo "== creating $venv with $pin" >&2
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
fi

mkdir -p "$(dirname "$out_rel")"
echo "== $pin: componentize app -> $out_rel" >&2
# componentize generates the bindings for the `agent` world of wit/ (package
# wit_world, plus componentize_py_types) and snapshots the initialised interpreter.
# `componentize-py -d wit -w agent bindings DIR` writes the same bindings for an editor.
(cd "$here" && PYTHONDONTWRITEBYTECODE=1 "$venv/bin/componentize-py" \
  -d "$root/wit" -w agent componentize app -p "$here" -o "$root/$out_rel.tmp")
mv "$root/$out_rel.tmp" "$root/$out_rel"
rm -rf "$here/__pycache__"

sha256sum "${inputs[@]}" "$out_rel" >"$stamp"
printf '%-28s %9d bytes (%s)\n' "$name@$version.wasm" "$(stat -c %s "$out_rel")" "$pin"
