"""What a configuration error says in words a YAML file's writer reads: a misspelt key's likely
meaning (the model's fields where it was written, `tokens_per_day` for `token_per_day`), and
pydantic's messages about types said in YAML's terms (a list, a mapping), never a model's class
name. Pure: it reads the models' fields, never a value of the file."""

from __future__ import annotations

import difflib
import types
from collections.abc import Iterator, Mapping, Sequence
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel

# pydantic's error types whose message names a Python type (a tuple) or a class (ProviderConfig),
# said as YAML says them.
_IN_YAML_TERMS = {
    "tuple_type": "expected a list ([a, b], or a '- ' line each)",
    "list_type": "expected a list ([a, b], or a '- ' line each)",
    "dict_type": "expected a mapping (key: value)",
    "model_type": "expected a mapping (key: value)",
    "model_attributes_type": "expected a mapping (key: value)",
    "missing": "missing (it is required)",
}


def in_yaml_terms(error_type: str, message: str) -> str:
    """pydantic's message for an error of this type, as a YAML file's writer reads it."""
    return _IN_YAML_TERMS.get(error_type, message)


def _next(annotation: Any, part: str | int) -> Iterator[Any]:
    """The annotations of what `part` names inside a value of this annotation."""
    origin = get_origin(annotation)
    if origin is Annotated:
        yield from _next(get_args(annotation)[0], part)
    elif origin is Union or origin is types.UnionType:
        for arg in get_args(annotation):
            yield from _next(arg, part)
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
        field = annotation.model_fields.get(part) if isinstance(part, str) else None
        if field is not None:
            yield field.annotation
    elif origin in (tuple, list, Sequence) and isinstance(part, int):
        yield from (arg for arg in get_args(annotation)[:1] if arg is not Ellipsis)
    elif origin in (dict, Mapping) and isinstance(part, str) and len(get_args(annotation)) == 2:
        yield get_args(annotation)[1]


def _fields(annotation: Any) -> Iterator[str]:
    """The keys a mapping of this annotation takes."""
    origin = get_origin(annotation)
    if origin is Annotated or origin is Union or origin is types.UnionType:
        for arg in get_args(annotation)[:1] if origin is Annotated else get_args(annotation):
            yield from _fields(arg)
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield from annotation.model_fields


def likely_key(model: type[BaseModel], place: Sequence[str | int]) -> str | None:
    """The key an unknown key at `place` (its path from the file's top) likely meant: the nearest
    in spelling of the keys taken where it was written, or None when none is near."""
    *parents, written = place
    if not isinstance(written, str):
        return None
    annotations: list[Any] = [model]
    for part in parents:
        annotations = [a for annotation in annotations for a in _next(annotation, part)]
    known = sorted({name for annotation in annotations for name in _fields(annotation)} - {written})
    close = difflib.get_close_matches(written, known, n=1, cutoff=0.6)
    return close[0] if close else None
