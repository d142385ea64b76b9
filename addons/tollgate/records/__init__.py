"""What is kept of the calls: the audit file, the usage ledger, metrics and traces. Plain
Python, no mitmproxy."""
