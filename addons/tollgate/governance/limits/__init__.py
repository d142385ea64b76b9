"""What a call may use: the limits and their counters (`limits.py`), the models' prices (`pricing.py`),
the most one answer may hold (`max_output.py`), and the roll-up of a long conversation (`rollup.py`).
What a call used, as they settle, is `calls/settlement.py`'s."""
