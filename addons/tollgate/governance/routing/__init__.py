"""Where a call goes, and whether it goes again: the override rules (`overrides.py`), the upstream and
the credential Tollgate puts on it (`upstream.py`), where a request carries the caller's
(`redaction.py`), retries and circuits (`failover.py`), and what becomes of a failed attempt on its
target, in one call (`next_try.py`). A call's route and its next attempt are
`calls/routes.py`'s and `calls/next_attempt.py`'s."""
