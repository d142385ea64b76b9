"""The audit file: its records, their bounds, how they are written and verified."""
