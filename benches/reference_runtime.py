"""The reference Python runtime (PyPI agentruntimecontrolprotocol 1.1.3) serving an
`echo` handler with the same contract as arcp-host's echo plugin, for side-by-side
benchmarks. Usage: python reference_runtime.py PORT TOKEN"""

import asyncio
import sys

from arcp._runtime.server import ARCPRuntime, RuntimeInfo
from arcp._transport.websocket import serve_websocket
from arcp.runtime import StaticBearerVerifier


async def echo(input_value, ctx):
    return {"echoed": input_value, "version": "1.0.0"}


async def main(port: int, token: str) -> None:
    runtime = ARCPRuntime(
        runtime=RuntimeInfo(name="arcp-python-reference", version="1.1.3"),
        bearer=StaticBearerVerifier({token: "bench"}),
    )
    runtime.register_agent("echo", echo)
    server = await serve_websocket(runtime.accept, host="127.0.0.1", port=port, path="/arcp")
    print(f"listening on ws://127.0.0.1:{port}/arcp", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
