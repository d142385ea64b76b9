"""What every format's answer guard shares: the protocols of the scanners it is handed
(`scanning`), one whole-string scan, and the reading of a streamed answer's events (`events`,
`chat_template`, `logprob_tokens`). Each format's own guard lives in its package
(`formats/<format>/answer_guard.py`); the guardrails' registry names them
(`governance/guardrails/answer_formats.py`)."""
