"""Why an upstream credential could not be had. Apart from `base.py`, which names the key pool's
type, so that the pool's own error (`keypool.CircuitOpen`) is one of these without a circle; and a
token asked for ahead, where that error waits for the first call (`fetch_ahead`)."""

import threading
from collections.abc import Callable


class CredentialUnavailable(Exception):
    """The upstream credential could not be had (a credential chain failed to refresh): the call
    is refused with this message."""


def fetch_ahead(fetch: Callable[[], object], thread: str) -> None:
    """Obtain the first token in a thread (`fetch`), so that the first call does not wait for it."""

    def ahead() -> None:
        try:
            fetch()
        except CredentialUnavailable:
            pass  # the first call that needs one tries again, and is refused saying why

    threading.Thread(target=ahead, name=thread, daemon=True).start()
