"""Crash recovery (issue 5), driven by the reference Python client.

Each test kills the real binary with SIGKILL (no shutdown code runs) at one point of
a job's life, restarts it on the same data folder, and checks with the reference
client what the runtime promised: a client that saw `event_seq` N resumes from N,
finished jobs are listed and replay with history, a job that was running ends with
a retryable INTERNAL_ERROR saying the runtime restarted, and an idempotent resubmit
never starts a second job.
"""

from __future__ import annotations

import asyncio
import os
import time

import arcp
import pytest
from arcp import ClientInfo, WebSocketTransport
from arcp.client import ARCPClient

from conftest import TOKEN, scratch_dir, start_host

pytestmark = pytest.mark.asyncio(loop_scope="function")


class Recording:
    """A transport that keeps every frame it receives. The reference client fails
    the handles of its jobs when a connection drops, so after a resume it drops
    their frames; this lets the test see what the runtime sent."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.frames: list[dict] = []

    async def send(self, envelope: dict) -> None:
        await self.inner.send(envelope)

    async def recv(self) -> dict:
        envelope = await self.inner.recv()
        self.frames.append(envelope)
        return envelope

    async def close(self) -> None:
        await self.inner.close()

    @property
    def is_closed(self) -> bool:
        return self.inner.is_closed


async def connect(url: str, transport=None) -> ARCPClient:
    client = ARCPClient(client=ClientInfo(name="crash", version="1"), token=TOKEN)
    await client.connect(transport or await WebSocketTransport.connect(url))
    return client


async def wait_until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.005)


async def resume(client: ARCPClient, url: str, seen: int) -> Recording:
    """Resumes `client`'s session on a new connection from `seen`."""
    transport = Recording(await WebSocketTransport.connect(url))
    await client.resume(
        transport,
        resume=arcp.SessionResume(
            session_id=client.session_id,
            resume_token=client.welcome.resume_token,
            last_event_seq=seen,
        ),
    )
    return transport


async def listed(client: ARCPClient) -> dict[str, str]:
    jobs: dict[str, str] = {}
    cursor = None
    while True:
        page = await asyncio.wait_for(client.list_jobs(limit=1000, cursor=cursor), 10)
        jobs.update({j.job_id: j.status for j in page.jobs})
        cursor = page.next_cursor
        if not cursor:
            return jobs


def assert_ended_by_restart(payload: dict) -> None:
    assert payload["code"] == "INTERNAL_ERROR", payload
    assert payload["retryable"] is True
    assert "restarted" in payload["message"]


async def ended_by_restart(done) -> None:
    with pytest.raises(arcp.InternalError) as ended:
        await asyncio.wait_for(done, 15)
    assert ended.value.retryable is True
    assert "restarted" in str(ended.value)


async def crash_and_resume(request, host, client, before: Recording, job_id: str):
    """Kills `host`, restarts it on its data, resumes `client` from the last
    `event_seq` it received, and waits for the job's terminal. Returns the new host,
    the frames of the session before and after the crash."""
    host.crash()
    await client._transport.close()
    # Frames that were in the socket when the host died are still read after the
    # kill: wait until the client has read all it will, so that `seen` is the last
    # frame it got (taken before, it could lag the recording, and the replay from it
    # then repeated what the client had already read).
    await asyncio.wait_for(client._read_task, 5)
    seen = client.latest_event_seq  # everything the client got before the kill
    host = start_host(data=host.data)
    request.addfinalizer(lambda: host.proc.kill())
    # Whatever the client saw was stored before it was sent: resuming from it is
    # never refused, and the replay carries on from there.
    after = await resume(client, host.url, seen)
    terminal = lambda f: f.get("job_id") == job_id and f["type"] in ("job.result", "job.error")
    await wait_until(lambda: any(terminal(f) for f in after.frames))
    frames = [f for f in before.frames + after.frames if f.get("event_seq") is not None]
    seqs = [f["event_seq"] for f in frames]
    assert seqs == list(range(1, len(seqs) + 1)), "one gap-free numbering across the crash"
    end = next(f for f in after.frames if terminal(f))
    assert end["type"] == "job.error"
    assert_ended_by_restart(end["payload"])
    return host, frames


async def test_killed_mid_stream_the_client_resumes_from_what_it_saw(request):
    host = start_host()
    request.addfinalizer(lambda: host.proc.kill())
    before = Recording(await WebSocketTransport.connect(host.url))
    client = await connect(host.url, before)
    handle = await client.submit(agent="ticker", input={"count": 400, "interval_ms": 5})
    await wait_until(lambda: client.latest_event_seq >= 20)
    host, frames = await crash_and_resume(request, host, client, before, handle.job_id)
    job_frames = [f for f in frames if f.get("job_id") == handle.job_id]
    assert job_frames[-1]["type"] == "job.error"

    assert (await listed(client))[handle.job_id] == "error"
    # Another session replays the job's history: every event the submitter was
    # sent (all that it saw before the crash), then the error.
    watched = Recording(await WebSocketTransport.connect(host.url))
    watcher = await connect(host.url, watched)
    sub = await asyncio.wait_for(watcher.subscribe(handle.job_id, history=True), 10)
    assert sub.replayed == len(job_frames)
    await wait_until(lambda: any(f["type"] == "job.error" for f in watched.frames))
    replay = [f for f in watched.frames if f.get("job_id") == handle.job_id and f["type"] != "job.subscribed"]
    assert [f["payload"] for f in replay] == [f["payload"] for f in job_frames]
    await watcher.close()
    await client.close()


async def test_killed_mid_chunked_result_the_chunks_seen_replay_and_the_job_ends(request):
    host = start_host()
    request.addfinalizer(lambda: host.proc.kill())
    before = Recording(await WebSocketTransport.connect(host.url))
    client = await connect(host.url, before)
    handle = await client.submit(agent="streamer", input={"chunks": 2000, "chunk_size": 65536})
    chunk = lambda f: f["type"] == "job.event" and f["payload"]["kind"] == "result_chunk"
    await wait_until(lambda: sum(1 for f in before.frames if chunk(f)) >= 10)
    host, frames = await crash_and_resume(request, host, client, before, handle.job_id)
    chunk_seqs = [f["payload"]["body"]["chunk_seq"] for f in frames if chunk(f)]
    assert chunk_seqs == list(range(len(chunk_seqs))), "chunks in order, none lost"

    # A new subscriber gets the same chunks from the store, then the error. (Read
    # from the wire: the reference client registers a subscription's handle only
    # after `job.subscribed`, so it may drop the first replayed frames.)
    watched = Recording(await WebSocketTransport.connect(host.url))
    watcher = await connect(host.url, watched)
    await asyncio.wait_for(watcher.subscribe(handle.job_id, history=True), 10)
    await wait_until(lambda: any(f["type"] == "job.error" for f in watched.frames))
    replayed = [f["payload"]["body"]["chunk_seq"] for f in watched.frames if chunk(f)]
    assert replayed == chunk_seqs
    end = next(f for f in watched.frames if f["type"] == "job.error")
    assert_ended_by_restart(end["payload"])
    assert (await listed(watcher))[handle.job_id] == "error"
    await watcher.close()
    await client.close()


@pytest.mark.parametrize("delay", [0.0, 0.001, 0.005, 0.02])
async def test_killed_between_submit_and_accept_a_resubmit_never_starts_a_second_job(request, delay):
    host = start_host()
    request.addfinalizer(lambda: host.proc.kill())
    client = await connect(host.url)
    key = f"crash-key-{delay}"
    submitting = asyncio.create_task(client.submit(agent="echo", input={"n": 1}, idempotency_key=key))
    await asyncio.sleep(delay)
    host.crash()
    first = None
    try:
        first = (await asyncio.wait_for(submitting, 2)).job_id
    except Exception:
        pass  # the kill came before the acceptance reached the client

    host = start_host(data=host.data)
    request.addfinalizer(lambda: host.proc.kill())
    again = await connect(host.url)
    before = await listed(again)
    if first is not None:
        # Acknowledged before the kill: the job is kept.
        assert first in before
    retry = await again.submit(agent="echo", input={"n": 1}, idempotency_key=key)
    after = await listed(again)
    if before:
        # The submit was recorded before the kill: the resubmit is that job.
        assert list(before) == [retry.job_id]
        assert after == before
    else:
        # Nothing was recorded: the resubmit is the one and only job.
        assert list(after) == [retry.job_id]
        result = await asyncio.wait_for(retry.done, 10)
        assert result.result["echoed"] == {"n": 1}
    await again.close()


async def test_killed_during_a_sweep_every_job_left_is_whole(request):
    config = os.path.join(scratch_dir("arcp-crash-"), "arcp-host.toml")
    with open(config, "w") as f:
        f.write("resume_window_sec = 1\n[retention]\njobs_sec = 1\nsweep_interval_sec = 1\n")
    host = start_host("--config", config)
    request.addfinalizer(lambda: host.proc.kill())
    client = await connect(host.url)
    submitted = []
    for i in range(300):
        handle = await client.submit(agent="echo", input={"n": i})
        submitted.append(handle)
    for handle in submitted:
        await asyncio.wait_for(handle.done, 10)
    await client.close()
    # Kill the moment the sweep starts removing jobs.
    await wait_until(lambda: any("removing finished jobs" in line for line in host.log), 15)
    host.crash()

    host = start_host(data=host.data)  # default retention: nothing more goes
    request.addfinalizer(lambda: host.proc.kill())
    watched = Recording(await WebSocketTransport.connect(host.url))
    watcher = await connect(host.url, watched)
    jobs = await listed(watcher)
    ids = {h.job_id: i for i, h in enumerate(submitted)}
    assert set(jobs) <= set(ids)
    # A job is removed whole or kept whole: every job left replays its result.
    for job_id in jobs:
        assert jobs[job_id] == "success"
        await asyncio.wait_for(watcher.subscribe(job_id, history=True), 10)
        result = lambda: [f for f in watched.frames if f.get("job_id") == job_id and f["type"] == "job.result"]
        await wait_until(lambda: result())
        assert result()[0]["payload"]["result"]["echoed"] == {"n": ids[job_id]}
    await watcher.close()
