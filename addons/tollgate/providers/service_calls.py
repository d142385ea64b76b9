"""The part of a provider that says what its service calls (`Classification.service`: its
settings, quota, model list, telemetry) answer with. Plain Python that knows nothing of mitmproxy."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ServiceCalls:
    """What a provider's service calls answer with, which every provider declares as its `services`.

    `without_model_text`: its service calls whose answers carry nothing a model wrote, by endpoint:
    under an answer rule only these of its service calls go on. Any other is refused unread
    (`governance/guardrails/unread_answers.py`): a service method Tollgate does not know may answer
    with model text no answer format reads. `model_text`: its service calls known to answer with
    model text, by endpoint: what each carries, which their refusal under an answer rule names."""

    without_model_text: frozenset[str] = frozenset()
    model_text: Mapping[str, str] = field(default_factory=dict)
