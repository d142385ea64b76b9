"""Why an upstream credential could not be had. Apart from `base.py`, which names the key pool's
type, so that the pool's own error (`keypool.CircuitOpen`) is one of these without a circle."""


class CredentialUnavailable(Exception):
    """The upstream credential could not be had (a credential chain failed to refresh): the call
    is refused with this message."""
