"""Who is looking at the console: set once per request by the server (`server.py`, from the
person's session or the token) and given to every view (`views.py`), which answers over the
records that person may see and no others."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Role = Literal["security", "lead", "self"]


@dataclass(frozen=True, slots=True)
class Viewer:
    """`security` sees every record; `lead` the records whose `groups` meet `leads` (the Tollgate
    groups its IdP groups map to) and its own; `self` its own: those of the clients whose `people`
    names `email`, of plan accounts with that e-mail, of JWT-identified clients it names."""

    role: Role
    email: str | None = None  # ASCII lower-cased (`email_key`); None for the token holder
    name: str | None = None
    leads: frozenset[str] = frozenset()


TOKEN_HOLDER = Viewer("security")
