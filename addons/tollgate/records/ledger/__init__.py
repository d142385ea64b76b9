"""The usage ledger's stores: counters for limits and a row per call, in SQLite or Redis.

Plain Python, no mitmproxy: the pipeline's Limit step and the usage report both use it."""

from tollgate.records.ledger.store import CALLS_KEPT, Charge, Reservation, Store, StoreError, open_store
from tollgate.records.ledger.windows import WINDOWS, window_bounds

__all__ = ["CALLS_KEPT", "WINDOWS", "Charge", "Reservation", "Store", "StoreError", "open_store", "window_bounds"]
