"""`egress:` in tollgate.yaml: which connections a governed client may open through Tollgate (the
CONNECTs it tunnels, and each captured connection by its server name), and which of them the audit
records. The decision itself is `governance/egress/egress.py`'s."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator

from tollgate.common.config_base import Strict
from tollgate.common.host_globs import host_glob
from tollgate.governance.egress.brokered import BrokeredCredential, credentials_unique

# A service's name, as the audit, the policy and the metrics call it.
_SERVICE_NAME = re.compile(r"[a-z][a-z0-9_-]{0,39}")
# A name of one label (`localhost`, a host on the local network's search domain), or a glob of one
# (`loc*host`): a single label has no owner outside the network, so no other owner's domain opens.
_ONE_LABEL = re.compile(r"[a-z0-9_*-]+")


def egress_glob(glob: str) -> str:
    """A host glob of `egress.allow`, `egress.deny` or `egress.services`, as hosts are matched
    against it: a host glob (`*.example.com`, its last two labels written out), a name or glob of
    one label (`localhost`, `wiki`, `loc*host`), or an IP address (`10.0.0.5`, `::1`). ValueError
    saying why, else."""
    if not isinstance(glob, str):
        raise ValueError(f"{glob!r} is not a host name glob")
    name = glob.strip().lower().removesuffix(".")
    try:
        return str(ipaddress.ip_address(name.removeprefix("[").removesuffix("]")))
    except ValueError:
        pass
    if _ONE_LABEL.fullmatch(name):
        if "**" in name:
            raise ValueError(f"{glob!r}: one '*' stands for any run of characters; write no two in a row")
        return name
    return host_glob(glob)


def service_name(name: str) -> str:
    if _SERVICE_NAME.fullmatch(name) is None:
        raise ValueError(
            f"{name!r}: a service's name is lower-case letters, digits, '_' and '-', starting with a letter"
            " (at most 40)"
        )
    return name


EgressGlob = Annotated[str, AfterValidator(egress_glob)]
ServiceName = Annotated[str, AfterValidator(service_name)]


class EgressConfig(Strict):
    """`egress:` each connection a client opens through Tollgate is decided before anything is
    relayed (`Egress.decide`): `deny` globs, then `default` (`deny`: only the providers' hosts,
    the MCP servers and `allow` pass), then the address (`private_addresses: deny` refuses a host
    that resolves to a loopback, private, link-local or unique local address unless `allow` names
    it or it is a configured upstream's), then the policy's `data.tollgate.egress.deny`.
    `record`: which connections the audit records (`ai`: those to a catalogued AI service and
    every refused one; `all`; `none`). `services` adds AI services to the catalogue, or hosts to
    one of its services, by name."""

    default: Literal["allow", "deny"] = "allow"
    allow: tuple[EgressGlob, ...] = ()
    deny: tuple[EgressGlob, ...] = ()
    private_addresses: Literal["deny", "allow"] = "deny"
    record: Literal["ai", "all", "none"] = "ai"
    services: dict[ServiceName, Annotated[tuple[EgressGlob, ...], Field(min_length=1)]] = Field(default_factory=dict)
    # Tokens of other APIs put in place of the placeholders agents hold (`governance/egress/brokered.py`).
    credentials: tuple[BrokeredCredential, ...] = ()

    @field_validator("credentials")
    @classmethod
    def _credentials_unique(cls, value: tuple[BrokeredCredential, ...]) -> tuple[BrokeredCredential, ...]:
        credentials_unique(value)
        return value
