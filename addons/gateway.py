"""Tollgate: the script mitmdump loads (`mitmdump -s addons/gateway.py`)."""

from tollgate.stages import chain

addons = [chain()]
