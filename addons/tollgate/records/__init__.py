"""What is kept of the calls: the audit file, metrics and traces, and the reports read from them
and the ledger. Plain Python, no mitmproxy."""
