"""The wiring on top: the MCP server composed from the tools and the state (app), the policies every call
passes, the HTTP transport with its authentication, and the command line."""
