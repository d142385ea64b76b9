"""The plain data every layer above shares: the settings' strict base and types (`config_base.py`), a
credential's tag in the audit (`fingerprint.py`), which hosts a glob matches (`host_globs.py`), what was
found for a call shape already (`shape_memo.py`), the audit's chain and signing keys (`audit_chain.py`).
Plain Python, no mitmproxy."""
