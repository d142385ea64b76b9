"""What decides a call: identity (clients, JWTs), overrides and routes, the policy, limits,
prices and the roll-up. Plain Python, no mitmproxy."""
