"""`py-wordcount`: an agent written in Python, built into a component with
componentize-py (see build.sh and docs/agents.md, "Writing an agent in Python").

Input `{"path": P, "top": N, "max_files": M}`:

- `path` (required): a file in the runtime's workspace, or a folder when it ends in
  `/` (`/` alone is the whole workspace), walked recursively through `list-dir`
  (only what the lease lets the job read is listed). Everything is read through the `fs.read` capability, so the lease must
  grant it (`"fs.read": ["/docs/**"]`).
- `top` (default 10, 0..100): how many of the most frequent words to return.
- `max_files` (default 10000, 1..100000): stop walking a folder after that many
  files (the result then says `"truncated": true`).

Returns `{"path", "files", "lines", "words", "chars", "bytes", "top", "per_file",
"truncated"}`: `lines` counts newlines plus an unterminated last line, `words` counts
whitespace-separated tokens (like `wc -w`), `chars` counts code points (invalid UTF-8
replaced), `top` lists `{"word", "count"}` for letter-only words, case-folded, most
frequent first (ties by word).

Events: `status` (walking a folder), `progress` per file (`units: "files"`), a
`metric` each for `words` and `bytes`, and a closing `log`.

Failures: input that does not fit ends the job with INVALID_REQUEST before any file
is read; a refused or failed capability call (PERMISSION_DENIED, LEASE_EXPIRED,
INVALID_REQUEST for a missing file, ...) ends the job with the host's failure as is,
the same contract as the Rust `reader` example.
"""

import json
import re
from collections import Counter

import wit_world
from componentize_py_types import Err
from wit_world.imports import capabilities, events
from wit_world.imports.types import Failure, JobInfo

# `words` counts whitespace-separated tokens (like `wc -w`); `top` ranks words made of
# letters (with inner apostrophes), case-folded.
SPACE = re.compile(r"\s")
CHUNK = 1 << 16
WORD = re.compile(r"[^\W\d_]+(?:['\u2019][^\W\d_]+)*")


def invalid(message: str) -> Err:
    return Err(Failure(code="INVALID_REQUEST", message=message, retryable=False))


def int_field(obj: dict, name: str, default: int, lo: int, hi: int) -> int:
    value = obj.get(name, default)
    if value is None:
        return default
    # bool is an int in Python; JSON true is not a count.
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(f"invalid input at `{name}`: expected an integer, got {json.dumps(value)}")
    if not lo <= value <= hi:
        raise invalid(f"invalid input at `{name}`: {value} is outside {lo}..{hi}")
    return value


def parse_input(input_json: str) -> tuple[str, int, int]:
    try:
        obj = json.loads(input_json)
    except ValueError as e:
        raise invalid(f"input is not JSON: {e}")
    if not isinstance(obj, dict):
        raise invalid(f"invalid input: expected an object with `path`, got {json.dumps(obj)[:64]}")
    path = obj.get("path")
    if not isinstance(path, str):
        what = "missing field `path`" if path is None else f"expected a string, got {json.dumps(path)[:64]}"
        raise invalid(f"invalid input at `path`: {what}")
    if not path:
        raise invalid("invalid input at `path`: empty path (name a file, or a folder ending in `/`)")
    top = int_field(obj, "top", 10, 0, 100)
    max_files = int_field(obj, "max_files", 10_000, 1, 100_000)
    return path, top, max_files


def walk(folder: str, max_files: int) -> tuple[list[str], bool]:
    """Files under `folder` (depth first, in the host's sorted order), at most
    `max_files`; a capability failure propagates as the job's failure."""
    files: list[str] = []
    stack = [folder.rstrip("/") + "/"]
    while stack:
        current = stack.pop()
        names = capabilities.list_dir(current)
        subfolders = []
        for name in names:
            if name.endswith("/"):
                subfolders.append(current + name)
            elif len(files) == max_files:
                return files, True
            else:
                files.append(current + name)
        stack.extend(reversed(subfolders))
    return files, False


def pieces(text: str):
    """`text` in slices of about CHUNK characters, each cut at a whitespace so that
    no word is split: counting slice by slice keeps the work in C (`str.split`,
    `findall`) while the lists it builds stay small, where `text.split()` on a 16 MiB
    file would take about ten times its size in the job's memory."""
    start, end_of_text = 0, len(text)
    while start < end_of_text:
        end = start + CHUNK
        if end < end_of_text:
            space = SPACE.search(text, end)
            end = space.start() if space else end_of_text
        yield text[start:end]
        start = end


def count(text: str, words: Counter | None) -> dict:
    """Lines, words and chars of `text`; adds its words to `words` when given."""
    lines = text.count("\n") + (1 if text and not text.endswith("\n") else 0)
    tokens = 0
    for piece in pieces(text):
        tokens += len(piece.split())
        if words is not None:
            words.update(WORD.findall(piece.lower()))
    return {"lines": lines, "words": tokens, "chars": len(text)}


class WitWorld(wit_world.WitWorld):
    def run(self, job: JobInfo, input_json: str) -> str:
        try:
            return wordcount(job, input_json)
        except Err:
            raise
        except Exception as e:  # a bug here: a typed failure rather than a trap
            raise Err(Failure(code="INTERNAL_ERROR", message=f"{type(e).__name__}: {e}", retryable=True))


def wordcount(job: JobInfo, input_json: str) -> str:
    path, top, max_files = parse_input(input_json)
    truncated = False
    if path.endswith("/"):
        events.status("listing", path)
        files, truncated = walk(path, max_files)
        if truncated:
            events.log("warn", f"stopped after {max_files} files (`max_files`)")
    else:
        files = [path]

    totals = {"lines": 0, "words": 0, "chars": 0, "bytes": 0}
    words: Counter[str] = Counter()
    per_file = []
    for i, name in enumerate(files):
        events.progress(float(i), float(len(files)), "files", name)
        data = capabilities.read_file(name)
        size = len(data)
        text = data.decode("utf-8", errors="replace")
        del data
        stats = count(text, words if top else None)
        stats["bytes"] = size
        for key, value in stats.items():
            totals[key] += value
        per_file.append({"path": name, **stats})
    events.progress(float(len(files)), float(len(files)), "files", None)

    events.metric("words", float(totals["words"]), "words")
    events.metric("bytes", float(totals["bytes"]), "bytes")
    ranked = sorted(words.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    events.log(
        "info",
        f"{job.agent}: {totals['words']} words, {totals['lines']} lines in {len(files)} file(s)",
    )
    return json.dumps(
        {
            "path": path,
            "files": len(files),
            **totals,
            "top": [{"word": w, "count": n} for w, n in ranked],
            "per_file": per_file,
            "truncated": truncated,
        }
    )
