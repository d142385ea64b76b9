"""The stages of connections to other hosts: egress rules, brokered credentials and MCP servers."""
