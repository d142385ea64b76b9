"""The call and its configuration: the call record (`call.py`), `tollgate.yaml` read and checked
(`config.py`), what is built from it and swapped in whole on a reload (`runtime.py`), and what
`tollgate serve` runs (`fleet.py`). Plain Python, no mitmproxy."""
