"""Calls made with a vendor's user token (a person's plan), not an API key: how such a token is
found in a call, once, what the call keeps of it, who makes it, and the `subscriptions:` settings
(`plan.py`); the accounts an asked-about token names (`asked_accounts.py`). Plain Python, knowing
nothing of mitmproxy; what each vendor's plans are is its provider's (`providers/`)."""
