"""Fixtures for the interop suite: a real arcp-host binary serving the bundled
plugins, driven by the reference Python client (PyPI agentruntimecontrolprotocol)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "interop-token"

# Folders the suite made, removed when the session ends: every host that used them has
# been terminated or killed by then (fixture teardown and test finalizers run first).
_SCRATCH: list[str] = []


def scratch_dir(prefix: str) -> str:
    """A fresh folder under the system's temp dir, removed at the end of the run."""
    path = tempfile.mkdtemp(prefix=prefix)
    _SCRATCH.append(path)
    return path


def pytest_sessionfinish(session, exitstatus):
    for path in _SCRATCH:
        # A killed host may still be closing its files: what it leaves is not ours to fail on.
        shutil.rmtree(path, ignore_errors=True)


class Host:
    """One running `arcp-host serve` process."""

    def __init__(self, url: str, proc: subprocess.Popen[str], log: list[str], data: str) -> None:
        self.url = url
        self.proc = proc
        self.log = log
        self.data = data

    def crash(self) -> None:
        """SIGKILL: no shutdown code runs."""
        self.proc.kill()
        self.proc.wait(timeout=10)


def start_host(*extra: str, data: str | None = None) -> Host:
    """Starts the binary; `data` reuses a data folder (a restart after a crash)."""
    binary = os.environ.get("ARCP_HOST_BIN") or str(ROOT / "target" / "debug" / "arcp-host")
    data = data or scratch_dir("arcp-interop-")
    proc = subprocess.Popen(
        [
            binary,
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--plugins",
            str(ROOT / "plugins"),
            "--data",
            data,
            "--token",
            f"{TOKEN}=interop",
            "--token",
            "other-token=mallory",
            *extra,
        ],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    log: list[str] = []
    assert proc.stderr is not None
    url = None
    for line in proc.stderr:
        log.append(line)
        m = re.search(r"listening on (ws://\S+)", line)
        if m:
            url = m.group(1)
            break
    if url is None:
        proc.kill()
        raise RuntimeError("arcp-host did not start:\n" + "".join(log))
    # Keep draining stderr so the host never blocks on a full pipe.
    threading.Thread(target=lambda: [log.append(l) for l in proc.stderr], daemon=True).start()
    return Host(url, proc, log, data)


@pytest.fixture(scope="session")
def host():
    h = start_host()
    yield h
    h.proc.terminate()
    h.proc.wait(timeout=10)


@pytest.fixture(scope="session")
def heartbeat_host():
    h = start_host("--heartbeat-interval", "1")
    yield h
    h.proc.terminate()
    h.proc.wait(timeout=10)
