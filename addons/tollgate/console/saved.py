"""The console's index, remembered beside the audit (`<audit>.console-index`), so that a restart
reads only the records written since, not a year of them again.

It holds what the index holds: each record's place and small columns, the names they stand for
(clients, providers, models, events: the audit's own words, no content and no secret) and the sums
per day; and, per file read, where reading stopped and what identifies the file. It is used only
when every file it names is still there, the same file (device and inode, and for a file being
written the bytes at its start and just before where reading stopped), in the same order; else it
is set aside and the audit is read afresh. It also holds the chain's state as far as it was
checked (`verify_state.saved_state`: each run's last records' chains, the faults found, the last
checkpoints) and, per file, the mark of the last line checked (its start and hash): a restart
checks the chain only from there, when every mark still holds, else from the files' start."""

from __future__ import annotations

import hashlib
import os
import sys
from array import array
from collections.abc import Callable
from dataclasses import fields
from functools import partial
from pathlib import Path
from typing import IO, Any

import orjson

from tollgate.console.day_sums import Day, Later, Person, Refusals, ServiceDay
from tollgate.console.index import NO_ORIGIN, Index, Origin

MAGIC = b"tollgate console index 6\n"  # 4: the sums per origin (`index.Origin`); 5: accounts in ASCII case;
# 6: money in nano-dollars
DAY_HEAD = len(b'["2026-11-22",')  # how a day's saved sums start: its date
SUFFIX = ".console-index"
PROBE = 64 << 10  # the bytes hashed at a file's start and before where reading stopped
ARRAYS = ("offsets", "clients", "origins", "providers", "decisions", "events", "hours", "models", "input_tokens",
          "output_tokens", "costs")  # fmt: skip


def path_for(audit_file: Path) -> Path:
    return audit_file.with_name(audit_file.name + SUFFIX)


def fingerprint(handle: IO[bytes], compressed: bool, position: int) -> dict[str, Any]:
    """What identifies a file read up to `position`: its device and inode, and for a plain file
    the hash of its first bytes and of those just before `position` (a file rewritten, truncated
    or replaced under the same name differs there). A compressed rotation is never written again:
    its size and time say it is the same."""
    stat = os.fstat(handle.fileno())
    found: dict[str, Any] = {"device": stat.st_dev, "inode": stat.st_ino, "compressed": compressed}
    if compressed:
        found.update(size=stat.st_size, mtime_ns=stat.st_mtime_ns)
        return found
    if stat.st_size < position:
        found["short"] = True
        return found
    fd = handle.fileno()
    head = os.pread(fd, min(PROBE, position), 0)
    tail_start = max(0, position - PROBE)
    tail = os.pread(fd, position - tail_start, tail_start)
    found.update(head=_hash(head), tail=_hash(tail))
    return found


def check_mark(handle: IO[bytes], compressed: bool, checked: int, at: int) -> str | None:
    """What says that the lines of a plain file checked up to byte `checked` are still there: the
    hash of the last of them (from byte `at`). A file rewritten, truncated or replaced since
    differs there; a compressed rotation is never written again (its `fingerprint` says so)."""
    if compressed or not checked:
        return None
    if not 0 <= at < checked:
        raise ValueError("no line there")
    return _hash(os.pread(handle.fileno(), checked - at, at))


def _hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


# ---- the index as bytes


def index_state(index: Index) -> dict[str, Any]:
    """The index's header (names, sums); its columns are written as they are (`write`)."""
    return {
        "byteorder": sys.byteorder,
        "arrays": [[name, getattr(index, name).typecode, getattr(index, name).itemsize, len(getattr(index, name))]
                   for name in ARRAYS],
        "file_starts": index.file_starts,
        "names": index._names,
        "hours": index._hours,
        "origins": [list(origin) for origin in index.origin_list],
        "malformed": index.malformed,
        "long_lines": list(index.long_lines.items()),
        "days": len(index.days),  # each written apart (`write`), so that a restart parses one at a time
    }  # fmt: skip


def _values(row: Any) -> list[Any]:
    return [getattr(row, f.name) for f in fields(row)]


def _day_state(day: Day) -> dict[str, Any]:
    return {
        "people": [[*key, *_values(p)] for key, p in day.people.items()],
        "spend": [[*key, *day.figures[at : at + 4]] for key, at in day.spend.items()],
        "refusals": [[*key, *_values(r)] for key, r in day.refusals.items()],
        "findings": [[*key, n] for key, n in day.findings.items()],
        "services": [[*key, *_values(s)] for key, s in day.services.items()],
    }


def _day(state: dict[str, Any], one: Callable[[Any], Any]) -> Day:
    """A day's sums; `one` gives the one object each name, reason, kind or key stands for, so
    that the days share it rather than each keeping its own copy (`Index.one`)."""
    day = Day()
    day.people = {one((one(c), one(k))): Person(*rest) for c, k, *rest in state["people"]}
    day.spend = {one(tuple(one(v) for v in row[:3])): 4 * n for n, row in enumerate(state["spend"])}
    day.figures = array("q", [int(figure) for row in state["spend"] for figure in row[3:7]])
    if len(day.figures) != 4 * len(day.spend):
        raise ValueError("spend of another shape")
    day.refusals = {one((one(k), one(c))): Refusals(count, one(reason), seen)
                    for k, c, count, reason, seen in state["refusals"]}  # fmt: skip
    day.findings = {one((one(k), one(c), one(where), one(action))): n for k, c, where, action, n in state["findings"]}
    day.services = {one((one(c), one(s))): ServiceDay(one(category), *rest)
                    for c, s, category, *rest in state["services"]}  # fmt: skip
    return day


def _read_at(handle: IO[bytes], at: int, length: int) -> bytes:
    """`length` bytes at `at`, wherever the handle stands (pread: no position shared)."""
    data = os.pread(handle.fileno(), length, at)
    if len(data) != length:
        raise ValueError("the saved index is cut")
    return data


def _load_day(saved: Callable[[], bytes], day: str, one: Callable[[Any], Any]) -> Day:
    named, state = orjson.loads(saved())
    if named != day:
        raise ValueError(f"the saved day {named!r} is not {day!r}")
    return _day(state, one)


def restore_index(header: dict[str, Any], data: IO[bytes]) -> Index:
    """An index from its saved header and columns; ValueError when they do not fit together."""
    if header["byteorder"] != sys.byteorder:
        raise ValueError("saved on a machine of another byte order")
    index = Index()
    # The days' sums are made when first asked for, read from a handle of their own (this file's
    # inode, whatever is saved over it meanwhile), closed once none is left to read.
    handle = open(os.dup(data.fileno()), "rb")  # noqa: SIM115
    for _ in range(int(header["days"])):
        length = int.from_bytes(data.read(8), "little")
        at = data.tell()
        head = data.read(DAY_HEAD)  # ["2026-11-22",{…
        if len(head) != DAY_HEAD or head[:2] != b'["' or head[-2:] != b'",':
            raise ValueError("a day of another shape")
        day = head[2:-2].decode("ascii")
        data.seek(at + length)
        saved = partial(_read_at, handle, at, length)
        index.days[day] = Later(partial(_load_day, saved, day, index.adder.one), saved)
    for name, typecode, itemsize, length in header["arrays"]:
        column = getattr(index, name)
        if name not in ARRAYS or column.typecode != typecode or column.itemsize != itemsize:
            raise ValueError(f"column {name} of another kind")
        restored = array(typecode)
        try:
            restored.fromfile(data, length)  # read into the column itself: no copy of a year's columns
        except EOFError:
            raise ValueError("cut") from None
        setattr(index, name, restored)
    if len({len(getattr(index, name)) for name in ARRAYS}) != 1:
        raise ValueError("columns of different lengths")
    index.file_starts = [int(n) for n in header["file_starts"]]
    index._file = len(index.file_starts) - 1
    index._names = list(header["names"])
    index._ids = {name: n for n, name in enumerate(index._names)}
    index._hours = list(header["hours"])
    index._hour_ids = {hour: n for n, hour in enumerate(index._hours)}
    index.origin_list = [_origin(o) for o in header["origins"]]
    index._origin_ids = {origin: n for n, origin in enumerate(index.origin_list)}
    if index.origin_list[:1] != [NO_ORIGIN] or len(index._origin_ids) != len(index.origin_list):
        raise ValueError("origins of another kind")
    if index.origins and max(index.origins) >= len(index.origin_list):
        raise ValueError("an origin not saved")
    index.malformed = int(header["malformed"])
    index.long_lines = {int(n): int(length) for n, length in header.get("long_lines", ())}
    return index


def _origin(saved: Any) -> Origin:
    client, groups, account, instance, jwt = saved
    return Origin(client, None if groups is None else tuple(groups), account, instance, bool(jwt))


def write(path: Path, header: dict[str, Any], index: Index) -> None:
    """Written whole under another name, then renamed: a reader finds the old index or the new.
    The columns are written as they are, with no copy: the caller holds the index still meanwhile."""
    text = orjson.dumps(header)
    partial = path.with_name(path.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(MAGIC)
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for day, sums in index.days.held():
            state = sums.saved() if isinstance(sums, Later) else orjson.dumps([day, _day_state(sums)])
            f.write(len(state).to_bytes(8, "little"))
            f.write(state)
        for name in ARRAYS:
            getattr(index, name).tofile(f)
    os.replace(partial, path)


def read(path: Path) -> tuple[dict[str, Any], IO[bytes]] | None:
    """The saved header and the open file at its columns; None when there is none or it is not
    an index of this version."""
    try:
        f = path.open("rb")
    except OSError:
        return None
    try:
        if f.read(len(MAGIC)) != MAGIC:
            f.close()
            return None
        length = int.from_bytes(f.read(8), "little")
        header = orjson.loads(f.read(length))
    except (OSError, orjson.JSONDecodeError):
        f.close()
        return None
    if not isinstance(header, dict):
        f.close()
        return None
    return header, f
