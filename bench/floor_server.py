"""The floor: a minimal MCPServer whose one tool makes the TextMagic request with a plain httpx2 client (its
defaults: a pool of 100, idle connections kept 5 s), started the way ours is, for the ratios in run.py."""

import os
from typing import Any

import httpx2
from mcp.server import MCPServer

server = MCPServer("floor")
http = httpx2.AsyncClient(
    base_url=os.environ["TEXTMAGIC_BASE_URL"],
    auth=(os.environ["TEXTMAGIC_USERNAME"], os.environ["TEXTMAGIC_API_KEY"]),
)


@server.tool()
async def get_message_session_stat(id: int) -> dict[str, Any]:
    """TextMagic's statistics of one session, as TextMagic sent them."""
    response = await http.get(f"/api/v2/sessions/{id}/stat", params={"includeDeleted": 0})
    data: dict[str, Any] = response.json()
    return data


if __name__ == "__main__":
    server.run("stdio")
