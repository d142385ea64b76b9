"""What decides a call, a package per concern: who calls (`identity/`), the policy (`policy/`),
limits, prices and the roll-up (`limits/`), where a call goes and goes again (`routing/`), which
connections open (`egress/`), MCP servers (`mcp/`), the guardrails (`guardrails/`) and a person's
plans (`subscriptions/`); what a rule's `match:` fits, for all of them (`matching.py`). Plain
Python, no mitmproxy."""
