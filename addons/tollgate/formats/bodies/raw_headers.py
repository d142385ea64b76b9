"""Raw header fields, as mitmproxy holds them: read into an index and changed, each in one pass."""

from __future__ import annotations

from collections.abc import Collection, Sequence

Fields = Sequence[tuple[bytes, bytes]]


def header_index(fields: Fields) -> dict[bytes, bytes]:
    """Raw header fields by lower-case name, in one pass; a repeated header's values joined as
    mitmproxy's `Headers.get` joins them. Values stay bytes: decoding each one cost more than the
    pass, and few are read (`decoded`)."""
    index = {name.lower(): value for name, value in fields}
    if len(index) < len(fields):  # a repeated header
        index = {}
        for name, value in fields:
            lower = name.lower()
            index[lower] = index[lower] + b", " + value if lower in index else value
    return index


def repeated(fields: Fields, name: bytes) -> bool:
    """Whether the fields hold the header `name` (lower-case) more than once, in any letter case."""
    size = len(name)
    return [len(f[0]) == size and f[0].lower() == name for f in fields].count(True) > 1


def decoded(index: dict[bytes, bytes], names: Collection[bytes]) -> dict[str, str]:
    """Those of the (lower-case) names an index holds, as text, as mitmproxy's `Headers` decodes them."""
    return {name.decode("latin-1"): index[name].decode("utf-8", "surrogateescape") for name in names if name in index}


def with_header(fields: Fields, name: bytes, value: bytes, add: bool = True) -> tuple[tuple[bytes, bytes], ...]:
    """The fields with `name` (lower-case) set to `value` in one pass: in place of its first
    occurrence, its others dropped (as mitmproxy's `Headers` sets), or added when absent if `add`."""
    names = [f[0].lower() for f in fields]  # the one pass in Python (a list comprehension runs inline)
    if name not in names:
        return (*fields, (name, value)) if add else tuple(fields)
    first = names.index(name)
    out = list(fields)
    out[first] = (fields[first][0], value)
    if names.count(name) > 1:
        out = [f for i, f in enumerate(out) if i == first or names[i] != name]
    return tuple(out)


def with_pinned_header(fields: Fields, name: bytes, value: bytes) -> tuple[tuple[bytes, bytes], ...]:
    """The fields with the header `name` (lower-case, with `-`) set to `value` in one pass, as
    `with_header` sets it, and every field that names it otherwise dropped too: in any letter
    case, with `_` for any `-` (many servers read `anthropic_allowed_org_ids` as
    `anthropic-allowed-org-ids`)."""
    size = len(name)
    names = [len(f[0]) == size and f[0].lower().replace(b"_", b"-") == name for f in fields]
    if True not in names:
        return (*fields, (name, value))
    first = names.index(True)
    return tuple((name, value) if i == first else f for i, f in enumerate(fields) if i == first or not names[i])
