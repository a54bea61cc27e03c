"""The floor: a minimal MCPServer with one trivial tool, started the way ours is, for the ratios in run.py."""

from mcp.server import MCPServer

server = MCPServer("floor")


@server.tool()
async def echo(id: int) -> dict[str, int]:
    """Return the id."""
    return {"id": id}


if __name__ == "__main__":
    server.run("stdio")
