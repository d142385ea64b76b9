"""What a call may use and what it used: the limits and their counters (`limits.py`), what a call
used as they settle (`settlement.py`), the models' prices (`pricing.py`), the most one answer may hold
(`max_output.py`), and the roll-up of a long conversation (`rollup.py`)."""
