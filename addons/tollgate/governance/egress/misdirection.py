"""Whether a request names one host throughout. A request names its host up to three ways: the
host its connection was opened to (a CONNECT's target; the proxy connects there), the TLS server
name its client sent, and its Host header (HTTP/2: `:authority`), which the server reads. mitmproxy
decrypts a connection when any of them is a governed host. Where they differ and one of them is
governed, the request is refused (`MISDIRECTED`): Tollgate governs a call by one name, and would
otherwise send it, and perhaps a real key, to an address its caller chose."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tollgate.providers import host_name


@dataclass(frozen=True, slots=True)
class Misdirected:
    """A request that names several hosts: the governed one it is refused as (the Host header's
    where that is governed, else the server name's, else the target's), and what it named."""

    governed: str
    named: str  # e.g. "connection to 127.0.0.1, TLS server name api.openai.com, Host api.openai.com"

    @property
    def message(self) -> str:
        """What its client is told."""
        return (
            f"Tollgate refused this request: it names more than one host ({self.named}). "
            f"Call {self.governed} by its name, through the proxy."
        )


def misdirection(
    target: str | None, server_name: str | None, hosts: Sequence[str], governs: Callable[[str], bool]
) -> Misdirected | None:
    """None where the request names one host throughout, or no governed host; else what it named.
    `target`: the host the connection was opened to (None where there is none to go by: a captured
    connection's is the address its client dialled); `server_name`: the TLS server name, if any;
    `hosts`: the hosts its Host header fields and `:authority` name, without their ports."""
    names = [host_name(h) for h in hosts]
    if server_name:
        names.append(host_name(server_name))
    if target:
        names.append(host_name(target))
    if len(set(names)) < 2:
        return None
    governed = next((name for name in names if governs(name)), None)
    if governed is None:
        return None
    said = []
    if target:
        said.append(f"connection to {host_name(target)}")
    said.append(f"TLS server name {host_name(server_name)}" if server_name else "no TLS server name")
    if hosts:
        said.append("Host " + ", ".join(dict.fromkeys(host_name(h) for h in hosts)))
    return Misdirected(governed, ", ".join(said))
