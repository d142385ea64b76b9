"""The guardrails' stage: what a call's body carries, counted, refused or redacted."""
