"""The part of a provider that says how a call names its model: in the path or the body, in which
form, and how the names its settings give map to models. Plain Python that knows nothing of
mitmproxy."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

from tollgate.common.config_base import ProviderConfig
from tollgate.formats.request_facts import Classification


@dataclass(frozen=True, slots=True)
class Models:
    """How a provider's calls name their model, which every provider declares as its `models`.

    `in_path`: where the native format names the model in the path (a `model` group), if it does.
    `ignore_case`: it reads model names without regard to letter case (Azure's deployment names):
    Tollgate then names them in lower case (`names`) and matches rules on them so."""

    in_path: re.Pattern[str] | None = None
    ignore_case: bool = False

    def path_with_model(self, path: str, model: str) -> str | None:
        """The path calling another model; None where the model is named in the body."""
        raw, _, query = path.partition("?")
        m = self.in_path.match(raw) if self.in_path else None
        if m is None:
            return None
        # One path segment, ":" and "/" percent-encoded, as botocore and the Gemini SDKs send it.
        rewritten = f"{raw[: m.start('model')]}{quote(model, safe='-_.~')}{raw[m.end('model') :]}"
        return f"{rewritten}?{query}" if query else rewritten

    def field(self, classification: Classification) -> str | None:
        """The body's field that names the model, where the path does not: an override writes the
        model it calls there. None where the body names it deeper, or not at all: the call then goes
        as asked. Default: `model`."""
        return "model"

    def in_body(self, sent: object, model: str) -> str:
        """What a body's model field says to call `model`, given what the client sent there."""
        return model

    def names(self, settings: ProviderConfig) -> Callable[[str], str] | None:
        """What model a model name the caller asked for is, for prices, limits, the policy and the
        audit, where the settings name models apart from what callers ask for (Azure's deployments);
        None where they do not. Default: None."""
        return None
