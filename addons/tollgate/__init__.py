"""Tollgate: govern LLM API traffic with mitmproxy addons."""
