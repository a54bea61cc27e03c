"""textmagic-sessions-mcp: an MCP server for the message sessions of a TextMagic account."""

__version__ = "0.1.0"
