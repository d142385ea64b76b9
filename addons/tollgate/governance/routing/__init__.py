"""Where a call goes, and where it goes when an attempt fails: the override rules (`overrides.py`),
a route's translation (`routes.py`), the upstream and the credential Tollgate puts on it
(`upstream.py`), where a request carries the caller's (`redaction.py`), retries and circuits
(`failover.py`), and a failed attempt's next step (`next_attempt.py`)."""
