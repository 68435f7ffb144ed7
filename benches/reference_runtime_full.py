"""The reference Python runtime (PyPI agentruntimecontrolprotocol 1.1.3) serving
native handlers with the contracts of arcp-host's `echo`, `ticker` and `sleeper`
plugins, so that `arcp-host bench --url` can put it through every phase (round trips,
event flood, many sessions, concurrent sleepers).
Usage: python reference_runtime_full.py PORT TOKEN"""

import asyncio
import os
import sys

from arcp._runtime.server import ARCPRuntime, RuntimeInfo
from arcp._transport.websocket import serve_websocket
from arcp.runtime import StaticBearerVerifier


async def echo(input_value, ctx):
    return {"echoed": input_value, "version": "1.0.0"}


async def ticker(input_value, ctx):
    count = int(input_value.get("count", 0))
    interval = float(input_value.get("interval_ms", 0)) / 1000.0
    progress = bool(input_value.get("progress", False))
    for i in range(count):
        await ctx.log("info", f"tick {i}")
        if progress:
            await ctx.progress(current=i + 1, total=count, units="ticks")
        if interval:
            await asyncio.sleep(interval)
    return {"ticks": count}


async def sleeper(input_value, ctx):
    seconds = float(input_value.get("seconds", 0))
    await asyncio.sleep(seconds)
    return {"slept": seconds}


async def main(port: int, token: str) -> None:
    runtime = ARCPRuntime(
        runtime=RuntimeInfo(name="arcp-python-reference", version="1.1.3"),
        bearer=StaticBearerVerifier({token: "bench"}),
    )
    runtime.register_agent("echo", echo)
    runtime.register_agent("ticker", ticker)
    runtime.register_agent("sleeper", sleeper)
    server = await serve_websocket(runtime.accept, host="127.0.0.1", port=port, path="/arcp")
    print(f"listening on ws://127.0.0.1:{port}/arcp (pid {os.getpid()})", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
