"""The `tollgate` command and the supervisor of a fleet. Plain Python, no mitmproxy."""
