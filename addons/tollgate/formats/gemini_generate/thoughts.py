"""Gemini's thought signatures, as the common chat model keeps them.

Gemini 2.5 and 3 put an opaque `thoughtSignature` on a part (a function call, a text, an empty
text, a thought) that must go back with that part on the next turn. In the model a signature is a
`Thinking` part placed just before the part that carried it: a thought summary followed by a signed
part reads as one `Thinking(summary, signature)`, an unsigned-thought-free signed part as
`Thinking("", signature)` before it. Writing a call, a `Thinking`'s signature goes on the part that
follows it (its text is dropped: Gemini needs no thought text back), or on an empty text part when
nothing follows. Writing an answer or a stream, a `Thinking` is a thought part carrying its
signature, which reads back the same. A signature another provider's model made goes to a Gemini
client sealed (`chat.seal`), so that it reaches that provider again when the client sends it back;
one not Gemini's own is never sent to Gemini (it answers 400). A model turn whose first function
call comes with no signature (history written by another provider's client, or its signature so
left out) gets Google's documented validator-skipping signature, as Gemini 3 refuses such a turn
otherwise."""

from __future__ import annotations

from typing import Any

from tollgate.formats.chat import Part, Thinking, signed_for
from tollgate.formats.gemini_generate.fields import NAME

# Google's documented thought signature for function calls it did not sign (history from elsewhere).
SKIP_SIGNATURE = "skip_thought_signature_validator"


def add_thinking(parts: list[Part], text: str, signature: str | None, origin: str | None) -> None:
    """A thought, or a signature, joining the unsigned Thinking just before it: Gemini signs the
    part after its thought summary, which the model keeps as one signed Thinking."""
    last = parts[-1] if parts else None
    if isinstance(last, Thinking) and last.signature is None and last.redacted is None:
        last.text += text
        last.signature, last.origin = signature, origin
    else:
        parts.append(Thinking(text=text, signature=signature, origin=origin))


def thought_part(text: str, signature: str | None, origin: str | None) -> dict[str, Any]:
    """A thought as a Gemini client is given it: another provider's signature sealed."""
    part: dict[str, Any] = {"text": text, "thought": True}
    if signature is not None:
        part["thoughtSignature"] = signed_for(signature, origin, NAME)
    return part
