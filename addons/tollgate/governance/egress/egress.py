"""Egress: which connections a client may open through Tollgate (`egress:` in tollgate.yaml). Each
is decided before anything is relayed, in one call (`Egress.decide`): a target that is no host is
refused; then the `deny` globs and `default` (`deny`: only the providers' hosts, the MCP servers'
and `allow` pass), then the address it resolves to (a private one is refused unless `allow` names
the host or it is a configured upstream), then the policy's `data.tollgate.egress.deny`. Plain
logic: the proxy's stage (`proxy/stages/egress/egress_gate.py`) asks once, with its resolver, and acts on the
decision (`Decided`): answers, records and relays."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

from tollgate.governance.egress.ai_services import Service, Services, glob_regex
from tollgate.governance.egress.egress_settings import EgressConfig
from tollgate.governance.policy.policy import EGRESS_DECISION, Decision, Policy, egress_facts

logger = logging.getLogger(__name__)

EGRESS_DENIED = "egress_denied"  # the X-Tollgate-Error of a refused connection
RESOLVE_TIMEOUT = 10.0  # seconds a name's lookup may take before the connection is refused
# What a name resolves to, first (the address the tunnel will go to); OSError when none.
Resolve = Callable[[str, int], Awaitable[str]]


def host_of(name: str) -> str:
    """A host as the egress globs are matched against it: lower case, no trailing dot, an IPv6
    address without its brackets and written as `ipaddress` writes it."""
    host = name.strip().lower().removesuffix(".").removeprefix("[").removesuffix("]")
    if ":" in host:
        try:
            return str(ipaddress.ip_address(host))
        except ValueError:
            pass
    return host


# A host name as a connection's target may be one: labels of letters, digits, '-' and '_' (the
# globs' characters), a trailing dot allowed.
_HOST_NAME = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*\.?")


def not_a_host(host: str, authority: str | None) -> str | None:
    """Why a connection's target is no host, or None where it is one: an IP address (in brackets,
    an IPv6 one only) or a host name. `host` as mitmproxy read it (brackets taken off);
    `authority`, the target as its client wrote it (a CONNECT's `host:port`), None where it is
    gone (a plain request's, in origin form by now)."""
    if authority is not None and authority.startswith("["):
        literal = authority[1:].partition("]")[0]
        try:
            ipaddress.IPv6Address(literal)
        except ValueError:
            return f"{_shown(f'[{literal}]')} is no host"
        return None
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    return None if _HOST_NAME.fullmatch(host.lower()) else f"{_shown(host)} is no host"


def _shown(text: str) -> str:
    """A target as a one-line reason can show it."""
    return text if text and text.isprintable() else repr(text)


def private_kind(address: str) -> str | None:
    """What kind of address, not to be reached by default, `address` is: loopback, private,
    link-local (the cloud metadata address among them), unique local, or another that is not
    global (unspecified, shared, reserved); None for a global address. An IPv6 address that carries
    an IPv4 one at a fixed place is that IPv4 address (`embedded_ipv4`); local-use NAT64 and
    Teredo, which reach IPv4 addresses by ways Tollgate cannot see, are refused whole."""
    try:
        ip = ipaddress.ip_address(address.removeprefix("[").removesuffix("]").split("%", 1)[0])
    except ValueError:
        return "unreadable"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _LOCAL_NAT64:
            return "local-use NAT64"
        if ip in _TEREDO:
            return "Teredo"
        ip = embedded_ipv4(ip) or ip
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if isinstance(ip, ipaddress.IPv6Address) and ip in _UNIQUE_LOCAL:
        return "unique local"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_multicast:
        return "multicast"
    if ip.is_private:
        return "private"
    if not ip.is_global:
        return "non-global"
    return None


_UNIQUE_LOCAL = ipaddress.IPv6Network("fc00::/7")
# Prefixes whose last 32 bits are an IPv4 address: IPv4-translated (RFC 2765), IPv4-compatible
# (RFC 4291, deprecated; `::` and `::1` are themselves), NAT64's well-known prefix (RFC 6052).
_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")
_COMPATIBLE = ipaddress.IPv6Network("::/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
# Refused whole: local-use NAT64 (RFC 8215), whose translator and mapping are the network's own;
# Teredo (RFC 4380), which tunnels to an IPv4 address through a relay.
_LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")
_TEREDO = ipaddress.IPv6Network("2001::/32")


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries at a fixed place, which a connection to it reaches:
    IPv4-mapped (`::ffff:a.b.c.d`), IPv4-translated (`::ffff:0:a.b.c.d`), IPv4-compatible
    (`::a.b.c.d`, not `::` nor `::1`), NAT64 (`64:ff9b::a.b.c.d`), 6to4 (`2002:AABB:CCDD::/48`).
    None for any other."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _TRANSLATED or ip in _NAT64 or (ip in _COMPATIBLE and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


class Globs:
    """Host globs (`egress_glob`s), matched as one expression; `match` gives the first that matches."""

    def __init__(self, globs: Sequence[str]) -> None:
        self.globs = tuple(globs)
        alternatives = [f"(?P<g{i}>{glob_regex(g)})" for i, g in enumerate(self.globs)]
        self._pattern = re.compile("|".join(alternatives)) if alternatives else None

    def match(self, host: str) -> str | None:
        if self._pattern is None:
            return None
        m = self._pattern.fullmatch(host)
        return self.globs[int(m.lastgroup[1:])] if m is not None and m.lastgroup is not None else None

    def __bool__(self) -> bool:
        return bool(self.globs)


@dataclass(frozen=True, slots=True)
class EgressVerdict:
    """A rule's answer on a connection: refused, with the one-line reason, or let through."""

    allowed: bool
    reason: str | None = None

    @staticmethod
    def deny(reason: str) -> EgressVerdict:
        return EgressVerdict(False, reason)


PASS = EgressVerdict(True)


@dataclass(slots=True)  # not frozen: made for every connection, and a frozen one costs twice as much
class Asked:
    """A connection to decide: its host (as `host_of` writes it) and port; its address where known
    (an IP address host's, the one a captured client dialled); who asks (a proxy login's client),
    from where (`source`, `address:port`); and its target as the client wrote it, checked to name a
    host (`target`: the host mitmproxy read and a CONNECT's authority; None for a captured
    connection, named by its TLS server name or the address it dialled)."""

    host: str
    port: int
    address: str | None = None
    client: str | None = None
    auth: str | None = None
    source: str | None = None
    target: tuple[str, str | None] | None = None


@dataclass(slots=True)  # not frozen: see `Asked`
class Decided:
    """A connection decided (`Egress.decide`), for the stage to act on and record: allowed, or
    refused with the one line its client is told (`reason`) and its record's reasons; the AI
    service its host belongs to; the address it was decided on (the tunnel goes there, not where
    a later lookup says); the record's error (a name not resolved, the policy's error);
    `bad_target`: it names no host (400, not 403)."""

    allowed: bool
    service: Service | None
    address: str | None
    reason: str | None = None
    deny_reasons: tuple[str, ...] = ()
    error: str | None = None
    bad_target: bool = False


class Egress:
    """The egress rules of a configuration, ready to decide connections.

    `governed(host)`: whether a host is one Tollgate reads calls to (a provider's, an MCP
    server's); `providers_host(host)`: whether it is a provider's or an MCP server's, its calls
    read or left tunnelled; `upstreams`: the (host, port) places the configuration sends calls to, which a
    private address does not keep a client from."""

    def __init__(
        self,
        config: EgressConfig,
        governed: Callable[[str], bool],
        upstreams: Iterable[tuple[str, int]] = (),
        providers_host: Callable[[str], bool] | None = None,
    ) -> None:
        self.config = config
        self.default_deny = config.default == "deny"
        self.private_denied = config.private_addresses == "deny"
        self.record = config.record
        self.allow = Globs(config.allow)
        self.deny = Globs(config.deny)
        self.services = Services(config.services)
        self.governed = governed
        # A provider's host, its calls read or not (`govern: false`): `default: deny` lets it through.
        self.providers_host = providers_host or governed
        self.upstreams = frozenset((host_of(h), p) for h, p in upstreams)

    def service_of(self, host: str) -> Service | None:
        return self.services.service_of(host)

    def decide(
        self, asked: Asked, policy: Policy | None, resolve: Resolve | None = None
    ) -> Decided | Awaitable[Decided]:
        """A connection decided, the whole order here: a target that is no host; its name
        (`by_name`); where private addresses are refused and nothing vouches for the host, its
        address (`by_address`: the one `resolve` gives, else the one it holds); then the policy.
        At once, or awaitable where a name is looked up or the policy's decision is not cached."""
        host, port = asked.host, asked.port
        service = self.service_of(host)
        if asked.target is not None and (problem := not_a_host(*asked.target)) is not None:
            return Decided(False, service, asked.address, problem, (problem,), bad_target=True)
        verdict = self.by_name(host, port)
        if verdict.allowed and not self.governed(host) and self.needs_address(host, port):
            if resolve is not None:
                return self._resolved_then(asked, service, policy, resolve)
            if asked.address is not None:
                verdict = self.by_address(host, asked.address)
        if not verdict.allowed:
            return _refused(verdict, service, asked.address)
        return _by_policy(asked, service, asked.address, policy)

    async def _resolved_then(
        self, asked: Asked, service: Service | None, policy: Policy | None, resolve: Resolve
    ) -> Decided:
        host = asked.host
        try:
            address = await asyncio.wait_for(resolve(host, asked.port), RESOLVE_TIMEOUT)
        except (OSError, TimeoutError) as e:
            reason = f"{host} cannot be resolved ({type(e).__name__}), so its address cannot be decided"
            return Decided(False, service, asked.address, reason, (reason,), error=f"cannot resolve {host}")
        verdict = self.by_address(host, address)
        if not verdict.allowed:
            return _refused(verdict, service, address)
        decided = _by_policy(asked, service, address, policy)
        return decided if isinstance(decided, Decided) else await decided

    def by_name(self, host: str, port: int) -> EgressVerdict:
        """What the host's name alone decides, before any lookup: a `deny` glob refuses it; under
        `default: deny`, a host neither governed nor allowed is refused."""
        glob = self.deny.match(host)
        if glob is not None:
            return EgressVerdict.deny(f"{host} matches egress.deny {glob!r}")
        if self.default_deny and not self.admitted(host, port):
            return EgressVerdict.deny(f"{host} is not in egress.allow (egress.default: deny)")
        return PASS

    def admitted(self, host: str, port: int) -> bool:
        """Whether `default: deny` lets the host through: a provider's or MCP server's host, one
        `allow` names, or a configured upstream's."""
        return self.providers_host(host) or self.allow.match(host) is not None or (host, port) in self.upstreams

    def needs_address(self, host: str, port: int) -> bool:
        """Whether the host must be resolved before it is decided: private addresses are refused,
        and neither `allow` nor a configured upstream vouches for it."""
        return self.private_denied and self.allow.match(host) is None and (host, port) not in self.upstreams

    @staticmethod
    def by_address(host: str, address: str) -> EgressVerdict:
        """A host resolved to `address`, checked for a private one (`needs_address` said to)."""
        kind = private_kind(address)
        if kind is None:
            return PASS
        shown = host if host == address else f"{host} resolves to {address}, which"
        return EgressVerdict.deny(f"{shown} is a {kind} address (egress.private_addresses: deny)")


def _refused(verdict: EgressVerdict, service: Service | None, address: str | None) -> Decided:
    reason = verdict.reason or "refused"
    return Decided(False, service, address, reason, (reason,))


def _by_policy(
    asked: Asked, service: Service | None, address: str | None, policy: Policy | None
) -> Decided | Awaitable[Decided]:
    """The policy's `data.tollgate.egress.deny` on the connection's facts: cached, or awaited."""
    allowed = Decided(True, service, address)
    if policy is None:
        return allowed
    a = asked
    name = service.name if service is not None else None
    facts = egress_facts(a.client, a.auth, a.source, a.host, a.port, address, name)
    decision = policy.decide(EGRESS_DECISION, facts)
    if type(decision) is Decision:
        return _by_decision(decision, allowed)
    return _by_decision_once_made(decision, allowed)  # type: ignore[arg-type]


def _by_decision(decision: Decision, allowed: Decided) -> Decided:
    if decision.allowed:
        return allowed
    if decision.error:
        logger.error(f"Tollgate: {decision.error}")
    reasons = decision.deny_reasons
    reason = f"egress policy: {'; '.join(reasons)}"
    return Decided(False, allowed.service, allowed.address, reason, reasons, error=decision.error)


async def _by_decision_once_made(decision: Awaitable[Decision], allowed: Decided) -> Decided:
    return _by_decision(await decision, allowed)
