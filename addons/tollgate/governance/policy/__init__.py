"""The policy: its settings, its kinds of decision and how each is asked and cached (`policy.py`), OPA's
engine in worker processes (`policy_engine.py`, `policy_worker.py`, `policy_builtins.py`), and
`tollgate policy test` (`policy_tests.py`, `policy_lint.py`). A call's input document is
`calls/policy_input.py`'s."""
