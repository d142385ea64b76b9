"""Guardrails: what a request carries that must not leave unseen (credentials, personal data,
Tollgate's own keys), found in its body and refused, redacted or counted. The detectors
(`detectors.py`, `checks.py`), what they read of a body (`text.py`), the one pass that finds them
(`engine.py`), the rules as tollgate.yaml writes them (`guardrails_settings.py`) and compiled (`rules.py`).
Plain Python, knowing nothing of mitmproxy."""
