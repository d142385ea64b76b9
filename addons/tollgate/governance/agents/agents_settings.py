"""The `agents` settings: which tools act, which results are trusted softly, and what a tainted
call or an injection finding does to an acting tool's calls: tollgate.yaml's `agents`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from tollgate.common.config_base import Strict
from tollgate.governance.egress.egress_settings import EgressGlob

Action = Literal["refuse", "record"]
Globs = list[Annotated[str, Field(min_length=1)]]

DEFAULT_ITEM_FIELDS = ("sender", "from", "author", "organizer", "owner", "created_by")


class LinksSettings(Strict):
    """Markdown images and links in an answer to hosts off `allow` are reduced to their text."""

    allow: Globs = Field(default_factory=list)
    action: Literal["redact"] = "redact"


class AgentsSettings(Strict):
    # Results of these tools taint nothing (the owner's own calendar, contacts, account).
    trusted_tools: Globs = Field(default_factory=list)
    # For these tools, a structured result is judged item by item: an item one of `owners` wrote
    # (by `item_fields`) taints nothing.
    item_tools: Globs = Field(default_factory=list)
    owners: Globs = Field(default_factory=list)
    item_fields: Globs = Field(default_factory=lambda: list(DEFAULT_ITEM_FIELDS))
    # These tools list names (channels, folders, members): a value of their result that is one word
    # by itself taints nothing; text with white space in it is outside content as any result's.
    name_tools: Globs = Field(default_factory=list)
    # Shorter values (and numbers) are not compared: too common to say where they came from.
    taint_min_chars: int = Field(default=5, ge=1)
    acting_tools: Globs = Field(default_factory=lambda: ["*"])
    on_tainted: Action = "refuse"
    after_injection: Action = "refuse"
    # After an `injection.*` finding, how long a conversation's (a personal caller's) or an MCP
    # session's acting MCP calls are refused, and a proxy login's new connections off
    # `egress_allow` (`quarantine.py`); 0: never.
    quarantine_s: int = Field(default=600, ge=0)
    egress_allow: list[EgressGlob] | None = None  # None: the providers' and the configured MCP servers' hosts
    links: LinksSettings | None = None
