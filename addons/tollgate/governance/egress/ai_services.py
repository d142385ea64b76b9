"""The AI services catalogue: which AI service, of which category, a host belongs to. Shipped as
data (`ai_services.yaml`, beside this module), extended by `egress.services` in tollgate.yaml."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib.resources import files

import yaml

from tollgate.common.host_globs import glob_pattern, label_pattern
from tollgate.governance.egress.egress_settings import egress_glob

CATEGORIES = ("ai_chat", "ai_coding", "ai_api", "ai_search", "ai_models")
CATALOGUE_FILE = "ai_services.yaml"


@dataclass(frozen=True, slots=True)
class Service:
    name: str
    category: str | None  # None for a service `egress.services` adds under a name of its own


@cache
def catalogue() -> tuple[tuple[Service, tuple[str, ...]], ...]:
    """The catalogue shipped with Tollgate: each service and its host globs, in the file's order."""
    data = yaml.safe_load(files(__package__ or __name__).joinpath(CATALOGUE_FILE).read_text(encoding="utf-8"))
    services = []
    for category, entries in data.items():
        if category not in CATEGORIES:
            raise ValueError(f"{CATALOGUE_FILE}: {category!r} is not a category ({', '.join(CATEGORIES)})")
        for name, globs in entries.items():
            services.append((Service(name, category), tuple(egress_glob(g) for g in globs)))
    return tuple(services)


def glob_regex(glob: str) -> str:
    """A regular expression over lower-case host names for an egress glob (`egress_glob`): an IP
    address matches itself, a glob of one label names of one label."""
    if ":" in glob or glob.replace(".", "").isdigit():
        return re.escape(glob)
    if "." not in glob:
        return label_pattern(glob)
    return glob_pattern(glob)


class Services:
    """The catalogue with the services a configuration adds (first: a host they name is theirs;
    a name of the catalogue's keeps its category). `service_of` is asked once per connection."""

    _CACHED = 4096  # hosts whose lookup is kept

    def __init__(
        self,
        added: Mapping[str, Sequence[str]] | None = None,
        shipped: Sequence[tuple[Service, tuple[str, ...]]] | None = None,
    ) -> None:
        shipped = catalogue() if shipped is None else shipped
        categories = {service.name: service.category for service, _ in shipped}
        entries = [(Service(name, categories.get(name)), tuple(globs)) for name, globs in (added or {}).items()]
        entries += list(shipped)
        self.services = tuple(service for service, _ in entries)
        alternatives = [f"(?P<s{i}>{'|'.join(map(glob_regex, globs))})" for i, (_, globs) in enumerate(entries)]
        self._pattern = re.compile("|".join(alternatives)) if alternatives else None
        self._found: dict[str, Service | None] = {}

    def service_of(self, host: str) -> Service | None:
        """The service a host (lower case, no trailing dot) belongs to, or None."""
        try:
            return self._found[host]
        except KeyError:
            pass
        m = self._pattern.fullmatch(host) if self._pattern is not None else None
        found = self.services[int(m.lastgroup[1:])] if m is not None and m.lastgroup is not None else None
        if len(self._found) < self._CACHED:
            self._found[host] = found
        return found

    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.services)
