"""Who may see which record: the one rule every view, filter, cursor, CSV, sum and the live stream
answers under (`views.py`).

A record's origin (`index.Origin`: its client, groups, plan account, instance) decides it:
`security` sees every record; a `lead` the records whose `groups` meet the Tollgate groups it
leads, and its own; everyone else (`self`) its own: those of the clients whose `people` names its
e-mail, of plan accounts with that e-mail, of JWT-identified clients whose name less an issuer's
`client_prefix` is that e-mail. E-mails compare in ASCII case only (`common.emails`). A record without a client is
`security`'s only, but for a plan call naming the person's own account: that account is the person,
as a client would be. A line that is no record is `security`'s only. A record that names no groups
(a connection, an MCP call) has its client's configured groups. Plain code: no HTTP, no files."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from tollgate.common.emails import email_key
from tollgate.console.index import Origin
from tollgate.console.viewer import Viewer

if TYPE_CHECKING:
    from tollgate.configuration.config import Config


class Origins(Protocol):
    """What numbers the origins: the files' `Index`, or the table's sums (`TableSums`)."""

    origin_list: list[Origin]


@dataclass(frozen=True, slots=True)
class ScopeRules:
    """What the configuration says of people: each e-mail's clients (`clients[].people`), each
    client's groups, and the JWT issuers' client prefixes (`identity.jwt[].client_prefix`)."""

    people: Mapping[str, frozenset[str]] = field(default_factory=dict)  # e-mail (`email_key`) → client names
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # client name → its groups
    prefixes: tuple[str, ...] = ()  # none without JWT issuers

    @classmethod
    def of(cls, config: Config) -> ScopeRules:
        people: dict[str, set[str]] = {}
        for client in config.clients:
            for email in client.people:
                people.setdefault(email_key(email), set()).add(client.name)
        return cls(
            people={email: frozenset(names) for email, names in people.items()},
            groups={client.name: tuple(client.groups) for client in config.clients},
            prefixes=tuple(dict.fromkeys(issuer.prefix for issuer in config.identity.jwt)),
        )


class Scope:
    """A viewer's scope: whether it sees each origin, decided once per origin and kept."""

    def __init__(self, viewer: Viewer, rules: ScopeRules) -> None:
        self.viewer = viewer
        self.rules = rules
        self.everything = viewer.role == "security"
        self.email = email_key(viewer.email) if viewer.email else None
        self.leads = viewer.leads if viewer.role == "lead" else frozenset()
        self.configured = rules.people.get(self.email, frozenset()) if self.email else frozenset()
        self._index: Origins | None = None
        self._seen: list[bool] = []  # per origin number: whether it is in scope
        self._chosen: frozenset[int] = frozenset()

    def sees(self, origin: Origin) -> bool:
        if self.everything:
            return True
        if self.own(origin):
            return True
        return origin.client is not None and bool(self.leads) and not self.leads.isdisjoint(self.groups_of(origin))

    def own(self, origin: Origin) -> bool:
        """A record of the viewer's own: of a client naming its e-mail among its people, of its plan
        account, or of a JWT-identified client named by its e-mail."""
        email = self.email
        if email is None:
            return False
        if origin.account == email:
            return True
        client = origin.client
        if client is None:
            return False
        return client in self.configured or (origin.jwt and self.jwt_named(client))

    def jwt_named(self, client: str) -> bool:
        """Whether a JWT-identified client's name, less an issuer's `client_prefix`, is the e-mail."""
        email = self.email
        return any(client.startswith(p) and email_key(client[len(p) :]) == email for p in self.rules.prefixes)

    def groups_of(self, origin: Origin) -> tuple[str, ...]:
        """The groups a record was made under: its own, or (a record that names none) its client's."""
        if origin.groups is not None:
            return origin.groups
        return self.rules.groups.get(origin.client, ()) if origin.client is not None else ()

    def chosen(self, index: Origins) -> frozenset[int] | None:
        """The numbers of the origins in scope among the index's; None: every one. Each origin is
        looked at once: the answer grows as new origins come."""
        if self.everything:
            return None
        if index is not self._index:
            self._index, self._seen, self._chosen = index, [], frozenset()
        origins = index.origin_list
        if len(self._seen) < len(origins):
            fresh = [self.sees(origin) for origin in origins[len(self._seen) :]]
            added = [n for n, seen in enumerate(fresh, len(self._seen)) if seen]
            self._seen.extend(fresh)
            if added:
                self._chosen = self._chosen.union(added)
        return self._chosen

    def clients(self, index: Origins) -> list[str] | None:
        """The clients in scope, by name (None: every one): the configured clients naming the
        viewer's e-mail or (for a lead) in a group it leads, and those of the records it may see."""
        chosen = self.chosen(index)
        if chosen is None:
            return None
        names = set(self.configured)
        if self.leads:
            names.update(name for name, groups in self.rules.groups.items() if not self.leads.isdisjoint(groups))
        names.update(c for c in (index.origin_list[n].client for n in chosen) if c is not None)
        return sorted(names)

    def budgets(self, index: Origins) -> tuple[set[str], set[str]]:
        """The clients and groups whose budgets the viewer sees, as each counter sums every call of
        its client or group: its own clients (those naming its e-mail among their people, the JWT
        clients it names) and for a lead the configured clients of the groups it leads; the groups
        it leads and its own clients' groups."""
        clients, groups = set(self.configured), set(self.leads)
        for client in self.configured:
            groups.update(self.rules.groups.get(client, ()))
        if self.leads:
            clients.update(name for name, of in self.rules.groups.items() if not self.leads.isdisjoint(of))
        if self.email is not None:
            for origin in index.origin_list:
                if origin.jwt and origin.client is not None and self.jwt_named(origin.client):
                    clients.add(origin.client)
                    groups.update(self.groups_of(origin))
        return clients, groups


def with_instance(chosen: frozenset[int] | None, index: Origins, instance: str | None) -> frozenset[int] | None:
    """`chosen` narrowed to the origins of `instance` (None: every instance); an instance no record
    names leaves none."""
    if instance is None:
        return chosen
    among: Iterable[int] = range(len(index.origin_list)) if chosen is None else chosen
    origins = index.origin_list
    return frozenset(n for n in among if origins[n].instance == instance)
