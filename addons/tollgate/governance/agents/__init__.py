"""Agents: tool calls decided by where their arguments came from."""
