"""The usage ledger's stores: counters for limits and a row per call, in SQLite or Redis, and which
store a URL names (`open_store`).

Plain Python, no mitmproxy: the pipeline's Limit step and the usage report both use it."""

from urllib.parse import urlsplit

from tollgate.ledger.store import CALLS_KEPT, Charge, Reservation, Store, StoreError
from tollgate.ledger.windows import WINDOWS, window_bounds

__all__ = ["CALLS_KEPT", "WINDOWS", "Charge", "Reservation", "Store", "StoreError", "open_store", "window_bounds"]


def open_store(url: str) -> Store:
    """The store `url` names: sqlite:///relative/path, sqlite:////absolute/path, or
    redis://[:password@]host[:port][/db] (rediss:// over TLS)."""
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        from tollgate.ledger.sqlite_store import SQLiteStore

        return SQLiteStore(sqlite_path(url))
    if scheme in ("redis", "rediss"):
        from tollgate.ledger.redis_store import RedisStore

        return RedisStore(url)
    raise StoreError(f"unknown ledger store scheme {scheme!r}: sqlite:///path or redis://host:port/db")


def sqlite_path(url: str) -> str:
    """The file of sqlite:///relative or sqlite:////absolute: the path after the third slash."""
    parts = urlsplit(url)
    path = parts.path.removeprefix("/")
    if parts.netloc or not path:
        raise StoreError("a SQLite ledger store is sqlite:///relative/path or sqlite:////absolute/path")
    return path
