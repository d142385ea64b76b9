"""The call and its configuration: the call record (`call.py`), and the steps that apply governance's
rules to one call: what it used as its counters settle (`settlement.py`), its input document for the
policy (`policy_input.py`), a route's translation (`routes.py`) and a failed attempt's next step
(`next_attempt.py`); `tollgate.yaml` read and checked (`config.py`, with the settings of the records
and the console, which read calls: `records_settings.py`, `console_settings.py`), what is built from
it and swapped in whole on a reload (`runtime.py`), and what `tollgate serve` runs and how a process
is named (`fleet.py`). Plain Python, no mitmproxy."""
