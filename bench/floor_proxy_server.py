"""The concurrency floors: a minimal MCPServer whose tool makes the TextMagic request with a plain httpx2 client,
and whose other tool only waits, as long as TextMagic's latency, without any HTTP.

Started like ours, with the same TEXTMAGIC_* environment and a pool as large as ours (the first argument), for
the ratios in run.py.
"""

import os
import sys
from typing import Any

import anyio
import httpx2
from mcp.server import MCPServer

POOL_SIZE = int(sys.argv[1])
server = MCPServer("floor-proxy")
http = httpx2.AsyncClient(
    base_url=os.environ["TEXTMAGIC_BASE_URL"],
    auth=(os.environ["TEXTMAGIC_USERNAME"], os.environ["TEXTMAGIC_API_KEY"]),
    limits=httpx2.Limits(max_connections=POOL_SIZE, max_keepalive_connections=POOL_SIZE),
)


@server.tool()
async def get_message_session_stat(id: int) -> dict[str, Any]:
    """TextMagic's statistics of one session, as TextMagic sent them."""
    response = await http.get(f"/api/v2/sessions/{id}/stat", params={"includeDeleted": 0})
    data: dict[str, Any] = response.json()
    return data


@server.tool()
async def wait(seconds: float) -> dict[str, float]:
    """Wait, then answer: all a call costs beyond the wait is the SDK's."""
    await anyio.sleep(seconds)
    return {"waited": seconds}


if __name__ == "__main__":
    server.run("stdio")
