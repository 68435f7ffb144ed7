"""The reference Python client (agentruntimecontrolprotocol 1.1.3) against arcp-host.

Each test drives the real binary over a real WebSocket with the bundled plugins.
"""

from __future__ import annotations

import asyncio
import json

import arcp
import pytest
import websockets
from arcp import ClientInfo, WebSocketTransport
from arcp.client import ARCPClient

from conftest import TOKEN

pytestmark = pytest.mark.asyncio(loop_scope="function")


async def connect(url: str, token: str = TOKEN, **kw) -> ARCPClient:
    client = ARCPClient(client=ClientInfo(name="interop", version="1"), token=token, **kw)
    await client.connect(await WebSocketTransport.connect(url))
    return client


async def collect(handle) -> list[dict]:
    events = []
    async def pump():
        async for ev in handle.events():
            events.append(ev)
    task = asyncio.create_task(pump())
    result = await asyncio.wait_for(handle.done, 30)
    await asyncio.sleep(0.05)
    task.cancel()
    return events, result


async def test_handshake_lists_every_agent_with_versions_and_defaults(host):
    client = await connect(host.url)
    welcome = client.welcome
    assert welcome.session_id.startswith("sess_")
    assert welcome.resume_token
    assert welcome.runtime.name == "arcp-host"
    agents = {a.name: a for a in welcome.capabilities.agents}
    assert list(agents["echo"].versions) == ["1.0.0", "2.0.0"]
    assert agents["echo"].default == "2.0.0"
    for name in ("ticker", "streamer", "sleeper", "spinner"):
        assert name in agents
    # The negotiated set is the intersection, in the client's order.
    assert set(client.negotiated_features) <= set(arcp.V1_1_FEATURES)
    assert "progress" in client.negotiated_features
    await client.close()


async def test_echo_returns_its_input_and_version(host):
    client = await connect(host.url)
    handle = await client.submit(agent="echo", input={"hello": [1, 2, 3]})
    result = await asyncio.wait_for(handle.done, 30)
    assert result.final_status == "success"
    assert result.result == {"echoed": {"hello": [1, 2, 3]}, "version": "2.0.0"}
    assert handle.agent_ref == "echo@2.0.0"
    await client.close()


async def test_version_pinning_resolves_the_exact_version(host):
    client = await connect(host.url)
    handle = await client.submit(agent="echo@1.0.0", input="pinned")
    result = await asyncio.wait_for(handle.done, 30)
    assert result.result == {"echoed": "pinned", "version": "1.0.0"}
    assert handle.agent_ref == "echo@1.0.0"
    await client.close()


async def test_unknown_agent_is_agent_not_available(host):
    client = await connect(host.url)
    with pytest.raises(arcp.AgentNotAvailableError):
        await client.submit(agent="nope", input=None)
    await client.close()


async def test_unknown_version_is_agent_version_not_available(host):
    client = await connect(host.url)
    with pytest.raises(arcp.AgentVersionNotAvailableError) as info:
        await client.submit(agent="echo@9.9.9", input=None)
    assert "1.0.0" in json.dumps(info.value.details)
    await client.close()


async def test_ticker_events_arrive_in_order_with_progress(host):
    client = await connect(host.url)
    handle = await client.submit(agent="ticker", input={"count": 3, "interval_ms": 5, "progress": True})
    events, result = await collect(handle)
    assert result.result == {"ticks": 3}
    kinds = [(e["kind"], e["body"]) for e in events]
    expected = []
    for i in range(3):
        expected.append(("log", {"level": "info", "message": f"tick {i}"}))
        expected.append(("progress", {"current": i + 1, "total": 3, "units": "ticks"}))
    assert kinds == expected
    await client.close()


async def test_event_seq_is_per_session_and_gap_free(host):
    """Raw frames: event_seq starts at 1 and goes up by exactly one across jobs."""
    async with websockets.connect(host.url) as ws:
        await ws.send(json.dumps({"arcp": "1.1", "id": "01JAAAAAAAAAAAAAAAAAAAAAAA", "type": "session.hello",
                                  "payload": {"client": {"name": "raw", "version": "1"},
                                              "auth": {"scheme": "bearer", "token": TOKEN},
                                              "capabilities": {"features": ["progress"]}}}))
        welcome = json.loads(await ws.recv())
        sid = welcome["payload"]["session_id"]
        for i, n in enumerate((2, 3)):
            await ws.send(json.dumps({"arcp": "1.1", "id": f"01JAAAAAAAAAAAAAAAAAAAAAB{i}", "type": "job.submit",
                                      "session_id": sid, "payload": {"agent": "ticker", "input": {"count": n}}}))
            while True:
                frame = json.loads(await ws.recv())
                if frame["type"] in ("job.result", "job.error"):
                    break
        await ws.send(json.dumps({"arcp": "1.1", "id": "01JAAAAAAAAAAAAAAAAAAAAAC0", "type": "session.bye",
                                  "session_id": sid, "payload": {"reason": "done"}}))
    # Second pass over a fresh session to collect the seqs seen.
    async with websockets.connect(host.url) as ws:
        await ws.send(json.dumps({"arcp": "1.1", "id": "01JAAAAAAAAAAAAAAAAAAAAAD0", "type": "session.hello",
                                  "payload": {"client": {"name": "raw", "version": "1"},
                                              "auth": {"scheme": "bearer", "token": TOKEN}}}))
        sid = json.loads(await ws.recv())["payload"]["session_id"]
        seqs = []
        for i, n in enumerate((2, 1)):
            await ws.send(json.dumps({"arcp": "1.1", "id": f"01JAAAAAAAAAAAAAAAAAAAAAE{i}", "type": "job.submit",
                                      "session_id": sid, "payload": {"agent": "ticker", "input": {"count": n}}}))
            while True:
                frame = json.loads(await ws.recv())
                if "event_seq" in frame:
                    seqs.append(frame["event_seq"])
                if frame["type"] in ("job.result", "job.error"):
                    break
        assert seqs == list(range(1, len(seqs) + 1))
        assert len(seqs) == (2 + 1) + (1 + 1)


async def test_streamed_result_assembles_from_chunks(host):
    client = await connect(host.url)
    handle = await client.submit(agent="streamer", input={"chunks": 5, "chunk_size": 100})
    data = await asyncio.wait_for(handle.collect_chunks(), 30)
    result = await asyncio.wait_for(handle.done, 30)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    expected = "".join((f"{i:06d}" + alphabet * 10)[:100] for i in range(5))
    assert data.decode() == expected
    assert result.final_status == "success"
    assert result.result_id.startswith("res_")
    assert result.result_size == 500
    assert result.result is None
    await client.close()


async def test_cancel_stops_a_spinner(host):
    client = await connect(host.url)
    handle = await client.submit(agent="spinner", input=None)
    await asyncio.sleep(0.2)
    await client.cancel_job(handle.job_id)
    result = await asyncio.wait_for(handle.done, 10)
    assert result.final_status == "cancelled"
    await client.close()


async def test_max_runtime_times_a_sleeper_out(host):
    client = await connect(host.url)
    handle = await client.submit(agent="sleeper", input={"seconds": 30}, max_runtime_sec=1)
    result = await asyncio.wait_for(handle.done, 10)
    assert result.final_status == "timed_out"
    await client.close()


async def test_bad_token_is_unauthenticated(host):
    client = ARCPClient(client=ClientInfo(name="interop", version="1"), token="wrong")
    with pytest.raises(arcp.UnauthenticatedError):
        await client.connect(await WebSocketTransport.connect(host.url))


async def test_malformed_frames_get_invalid_request_and_the_session_goes_on(host):
    async with websockets.connect(host.url) as ws:
        await ws.send(json.dumps({"arcp": "1.1", "id": "01JAAAAAAAAAAAAAAAAAAAAAF0", "type": "session.hello",
                                  "payload": {"client": {"name": "raw", "version": "1"},
                                              "auth": {"scheme": "bearer", "token": TOKEN}}}))
        sid = json.loads(await ws.recv())["payload"]["session_id"]
        bad_frames = [
            "{not json",
            "[1,2,3]",
            json.dumps({"arcp": "2.0", "id": "01JAAAAAAAAAAAAAAAAAAAAAF1", "type": "session.ping", "payload": {}}),
            json.dumps({"arcp": "1.1", "type": "session.ping", "payload": {}}),
            json.dumps({"arcp": "1.1", "id": "01JAAAAAAAAAAAAAAAAAAAAAF2", "type": "no.such.type", "payload": {}}),
            json.dumps({"arcp": "1.1", "id": "01JAAAAAAAAAAAAAAAAAAAAAF3", "type": "job.submit", "payload": {"agent": 42}}),
        ]
        for frame in bad_frames:
            await ws.send(frame)
            reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert reply["type"] == "session.error", frame
            assert reply["payload"]["code"] == "INVALID_REQUEST", frame
            assert reply["payload"]["message"], frame
        # The session still works.
        await ws.send(json.dumps({"arcp": "1.1", "id": "01JAAAAAAAAAAAAAAAAAAAAAF4", "type": "job.submit",
                                  "session_id": sid, "payload": {"agent": "echo", "input": 1}}))
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if frame["type"] == "job.result":
                assert frame["payload"]["result"]["echoed"] == 1
                break


async def test_runtime_pings_and_the_client_answers(heartbeat_host):
    """With a 1 s heartbeat, a client that answers pings stays connected for 3 s."""
    client = await connect(heartbeat_host.url)
    assert client.welcome.heartbeat_interval_sec == 1
    await asyncio.sleep(3.2)
    handle = await client.submit(agent="echo", input="still here")
    result = await asyncio.wait_for(handle.done, 10)
    assert result.result["echoed"] == "still here"
    await client.close()


async def test_a_second_session_subscribes_with_history_and_cannot_cancel(host):
    owner = await connect(host.url)
    handle = await owner.submit(agent="ticker", input={"count": 8, "interval_ms": 100})
    await asyncio.sleep(0.35)
    watcher = await connect(host.url)
    sub = await asyncio.wait_for(watcher.subscribe(handle.job_id, history=True), 10)
    assert sub.job_id == handle.job_id
    assert sub.replayed >= 1
    assert sub.subscribed_from == 1
    # A subscriber may not cancel: the runtime refuses, the job runs to its end.
    await watcher.cancel_job(handle.job_id)
    result = await asyncio.wait_for(handle.done, 30)
    assert result.final_status == "success"
    assert result.result == {"ticks": 8}
    await watcher.close()
    await owner.close()


async def test_list_jobs_filters_and_pages(host):
    client = await connect(host.url)
    ids = []
    for i in range(3):
        h = await client.submit(agent="echo@1.0.0", input=i)
        await asyncio.wait_for(h.done, 10)
        ids.append(h.job_id)
    seen = []
    cursor = None
    while True:
        page = await asyncio.wait_for(
            client.list_jobs(filter=arcp.ListJobsFilter(agent="echo@1.0.0", status=["success"]), limit=2, cursor=cursor), 10)
        seen += [j.job_id for j in page.jobs]
        cursor = page.next_cursor
        if not cursor:
            break
    assert [j for j in seen if j in ids] == ids
    await client.close()


async def test_idempotent_resubmit_replays_and_conflict_is_duplicate_key(host):
    client = await connect(host.url)
    first = await client.submit(agent="echo", input={"k": 1}, idempotency_key="interop-key")
    await asyncio.wait_for(first.done, 10)
    again = await client.submit(agent="echo", input={"k": 1}, idempotency_key="interop-key")
    assert again.job_id == first.job_id
    with pytest.raises(arcp.DuplicateKeyError):
        await client.submit(agent="echo", input={"k": 2}, idempotency_key="interop-key")
    await client.close()


async def test_resume_replays_and_rotates_the_token(host):
    client = await connect(host.url)
    handle = await client.submit(agent="ticker", input={"count": 5, "interval_ms": 150})
    await asyncio.sleep(0.2)
    seen = client.latest_event_seq
    session_id, token = client.session_id, client.welcome.resume_token
    await client._transport.close()  # the connection drops; the job goes on
    await asyncio.sleep(0.5)
    again = ARCPClient(client=ClientInfo(name="interop", version="1"), token=TOKEN)
    welcome = await again.resume(await WebSocketTransport.connect(host.url),
                                 resume=arcp.SessionResume(session_id=session_id, resume_token=token, last_event_seq=seen))
    assert welcome.session_id == session_id
    assert welcome.resume_token != token
    # Replayed and live frames carry on the session's numbering without a gap.
    deadline = asyncio.get_running_loop().time() + 10
    while again.latest_event_seq < 6 and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
    assert again.latest_event_seq == 6  # 5 ticks + the result
    await again.close()
