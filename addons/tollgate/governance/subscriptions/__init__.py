"""Calls made with a vendor's user token (a person's plan: Codex with ChatGPT, Gemini CLI with
Google, Claude Code, Copilot), not an API key: how such a token is found in a call, once, and
what the call keeps of it (`plan.py`); the accounts a Google token names (`google_accounts.py`);
the `subscriptions:` settings, the company's tenants and the vendors' tenant headers
(`settings.py`). Plain Python, knowing nothing of mitmproxy."""
