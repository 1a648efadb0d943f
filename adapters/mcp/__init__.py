"""The MCP server: every application use case as a tool, the catalog and schemas as resources."""
