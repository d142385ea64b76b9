"""Tollgate: the script mitmdump loads (`mitmdump -s addons/gateway.py`)."""

from tollgate.proxy.pipeline import gateway

addons = [gateway()]
