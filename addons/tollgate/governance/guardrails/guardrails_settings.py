"""`guardrails:` as tollgate.yaml writes it: rules, each with a `match` (as limits and overrides
match), the detectors it names (`detect`), its `action` and what it does with a call it cannot
read (`unread`)."""

from __future__ import annotations

import difflib
import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, ValidationInfo, field_validator, model_validator

from tollgate.common.config_base import Strict
from tollgate.governance.guardrails import detectors
from tollgate.governance.guardrails.detectors import OWN_KEYS
from tollgate.governance.matching import OverrideMatch, known_providers, unknown_provider

Action = Literal["deny", "redact", "audit"]
# What a rule reads: the request, the answer that comes back, or both.
Side = Literal["request", "answer"]
# The most of an answer a rule may hold back, and the least (a key's prefix and a little).
ANSWER_HOLD_BYTES = 4096
_ANSWER_HOLD_MIN = 64
_ANSWER_HOLD_MAX = 1024 * 1024
# A finding's action when rules differ: the strongest wins.
STRENGTH: dict[str, int] = {"audit": 0, "redact": 1, "deny": 2}
# A custom detector's name, which is its findings' kind (and goes into `[REDACTED:<kind>]`).
_CUSTOM_NAME = re.compile(r"[a-z][a-z0-9_.-]{0,63}")


def builtin_names() -> tuple[str, ...]:
    return (*detectors.GROUPS, *detectors.KINDS)


def likely_detectors(written: str) -> list[str]:
    """The built-in detectors a name no detector has likely meant, at most three: a kind of that
    name in a group (`email`: `pii.email`), else the kinds it begins (`secrets.aws`), else a group
    near in spelling (`secret`), else the kinds nearest in spelling."""
    groups, kinds = [*detectors.GROUPS, OWN_KEYS], list(detectors.KINDS)
    for found in (
        [n for n in kinds if n.rpartition(".")[2] == written],
        [n for n in kinds if "." in written and n.startswith(written)],
        difflib.get_close_matches(written, groups, n=1, cutoff=0.75),
        difflib.get_close_matches(written, kinds, n=1, cutoff=0.8),
    ):
        if found:
            return found[:3]
    return []


class Detect(Strict):
    """One entry of `detect`: a built-in detector's name (or a group's), `{name, regex}` or
    `{name, terms: [...]}`."""

    name: str = Field(min_length=1)
    regex: str | None = None
    terms: tuple[Annotated[str, Field(min_length=1)], ...] | None = None

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            pattern = re.compile(value.encode())
        except re.error as e:
            raise ValueError(f"not a regular expression: {e}") from None
        if pattern.search(b"") is not None:
            raise ValueError("matches the empty text: every body would have a finding")
        return value

    @model_validator(mode="after")
    def _known(self) -> Detect:
        if self.regex is not None and self.terms is not None:
            raise ValueError("set one of regex and terms")
        if self.regex is None and self.terms is None:
            # `tollgate_keys` is always on and always denies: naming it in a rule says so, and changes nothing.
            if self.name not in builtin_names() and self.name != OWN_KEYS:
                meant = likely_detectors(self.name)
                raise ValueError(
                    f"unknown detector {self.name!r}"
                    + (f" (did you mean {' or '.join(meant)}?)" if meant else "")
                    + f"; the built-in ones are {', '.join(detectors.GROUPS)}, {OWN_KEYS} and each kind of a group"
                    " (secrets.aws_access_key_id, pii.email, …: docs/guardrails.md, The detectors), or a custom one"
                    " ({name, regex} or {name, terms: [...]})"
                )
            return self
        if self.name in builtin_names() or self.name == OWN_KEYS:
            raise ValueError(f"{self.name!r} is a built-in detector's name; a custom detector needs its own")
        if _CUSTOM_NAME.fullmatch(self.name) is None:
            raise ValueError(
                f"{self.name!r}: a custom detector's name is lower-case letters, digits, '_', '.' and '-', starting"
                " with a letter (at most 64)"
            )
        return self

    @property
    def kinds(self) -> tuple[str, ...]:
        """The kinds of finding it names."""
        if self.regex is None and self.terms is None:
            return detectors.GROUPS.get(self.name, (self.name,))
        return (self.name,)


def _entry(value: Any) -> Any:
    """A name written alone stands for `{name: …}`."""
    return {"name": value} if isinstance(value, str) else value


class GuardrailRule(Strict):
    """One `guardrails:` rule: the calls it reads (`match`), what it looks for (`detect`), what a
    finding does (`action`) and what a call it cannot read does (`unread`)."""

    match: OverrideMatch = OverrideMatch()
    detect: tuple[Annotated[Detect, BeforeValidator(_entry)], ...]
    action: Action
    unread: Literal["deny", "allow"] = "allow"
    on: tuple[Side, ...] = ("request",)
    answer_hold_bytes: int = Field(ANSWER_HOLD_BYTES, ge=_ANSWER_HOLD_MIN, le=_ANSWER_HOLD_MAX)

    @model_validator(mode="before")
    @classmethod
    def _on_in_yaml(cls, data: Any) -> Any:
        """YAML 1.1 reads a bare `on:` key as the boolean true: it is this rule's `on`."""
        if isinstance(data, dict) and True in data and "on" not in data:
            data = {("on" if key is True else key): value for key, value in data.items()}
        return data

    @field_validator("on")
    @classmethod
    def _sides(cls, value: tuple[Side, ...]) -> tuple[Side, ...]:
        if not value:
            raise ValueError("name what the rule reads: [request], [answer] or [request, answer]")
        if len(set(value)) < len(value):
            raise ValueError("names a side twice")
        return value

    @field_validator("detect")
    @classmethod
    def _some(cls, value: tuple[Detect, ...]) -> tuple[Detect, ...]:
        if not value:
            raise ValueError("name at least one detector (secrets, pii, one of theirs or a custom one)")
        return value

    @model_validator(mode="after")
    def _provider_known(self, info: ValidationInfo) -> GuardrailRule:
        known = known_providers(info)
        if self.match.provider is not None and self.match.provider not in known:
            raise ValueError(unknown_provider(self.match.provider, known))
        return self

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(k for d in self.detect for k in d.kinds))


def custom_detectors_unique(rules: tuple[GuardrailRule, ...]) -> None:
    """A custom detector's name is one detector: two rules may name it, but not define it twice
    differently (the kind in findings would not say which)."""
    seen: dict[str, tuple[int, int, Detect]] = {}
    for i, rule in enumerate(rules):
        for j, entry in enumerate(rule.detect):
            if entry.regex is None and entry.terms is None:
                continue
            first = seen.setdefault(entry.name, (i, j, entry))
            if first[2] != entry:
                raise ValueError(
                    f"guardrails.{i}.detect.{j}: {entry.name!r} is defined differently in"
                    f" guardrails.{first[0]}.detect.{first[1]}"
                )
