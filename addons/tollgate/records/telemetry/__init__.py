"""Metrics and traces of the calls."""
