"""Tollgate: the script mitmdump loads (`mitmdump -s addons/gateway.py`)."""

from tollgate.pipeline import gateway

addons = [gateway()]
