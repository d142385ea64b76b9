"""The audit record the audit benches send, as the audit writes it."""

# A call's record as the audit writes it (docs/audit.md's example), varied per call.
RECORD = {
    "event": "llm_call", "instance": "gw-1", "ts": "2026-11-22T08:30:12.345Z", "request_id": "",
    "client": "alice", "auth": "virtual_key", "groups": ["research"], "provider": "openai",
    "requested_provider": "openai", "endpoint": "chat.completions", "upstream_endpoint": "chat.completions",
    "method": "POST", "transport": "http", "host": "api.openai.com", "path": "/v1/chat/completions",
    "requested_model": "gpt-4o", "publisher": None, "model": "gpt-4o", "message_count": 2, "has_system": True,
    "has_tools": False, "stream": False, "max_tokens": 256, "decision": "allow", "deny_reasons": [],
    "findings": {}, "redacted": 0, "status": 200, "upstream": "https://api.openai.com",
    "upstream_key": "sha256:4be1a3c09d2e", "latency_ms": 912.4, "ttfb_ms": 905.8, "input_tokens": 21,
    "output_tokens": 7, "total_tokens": 28, "cached_tokens": 5, "reasoning_tokens": 2, "cache_write_tokens": None,
    "service_tier": "default", "speed": None, "cost_usd": 0.00011625, "finish_reason": "stop", "error": None,
    "ledger_error": None, "rolled_up_messages": None, "rollup": None, "attempts": None,
}  # fmt: skip
