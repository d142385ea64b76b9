"""The audit files the console reads, followed as they grow and across a rotation.

The files are read oldest first into one `Index` and one live `Verifier` (what `tollgate audit
verify --live` says, kept up to date line by line, never verified afresh). The last file is
followed: its new whole lines are read as they come; when its path names another file (logrotate
moved it to `<path>.1` and Tollgate opened a new one), what is left of the old one is read, then
the new file from its start. Files stay open, so that a record is served again as written from its
place, whatever the file is now called."""

from __future__ import annotations

import gc
import gzip
import os
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from tollgate.console import saved
from tollgate.console.index import BAD_LINE
from tollgate.console.source import Source
from tollgate.records.audit.anchor_verify import AnchorRules
from tollgate.records.audit.audit_verify import Place
from tollgate.records.audit.verify_state import restored_verifier, saved_state
from tollgate.records.followed_file import Follower

CHUNK = 2 << 20  # bytes read at once
LINE_READ = 4096  # bytes read at first to serve a record again (most are about 1 kB)
RECENT = 2000  # the last records kept as lines, for the live stream
SAVE_EVERY_S = 300.0  # how often, at most, the index is saved again while records come


@dataclass(slots=True)
class OpenedFile:
    path: Path
    handle: IO[bytes]
    compressed: bool
    inode: int
    position: int = 0  # of the first byte not read yet
    records: int = 0
    lost: int = 0  # `worker lost` records
    checked: int = 0  # the bytes whose chain the verifier has read
    checked_lines: int = 0
    checked_at: int = 0  # of a plain file: where the last line checked starts (its mark, `saved.py`)
    checker: IO[bytes] | None = None  # a compressed file's second reader, for the verifier
    check_pending: bytes = b""  # of a compressed file: read, not checked (a line's start)
    instances: dict[str, int] = field(default_factory=dict)  # records per instance
    # A line longer than CHUNK being written: where it starts, and how far it was looked through.
    long_scan: tuple[int, int] | None = None
    first_record: int = 0  # the number of its first record (of what it holds since it was truncated)
    first_fault: int | None = None  # the first line (from 1) of it a fault of the chain names


class AuditFiles(Source):
    """The records of `paths` (oldest first), the last followed when `follow`."""

    def __init__(
        self, paths: Sequence[Path], follow: bool = True, key: Ed25519PublicKey | None = None,
        remember: Path | None = None, anchors: AnchorRules | None = None,
    ) -> None:  # fmt: skip
        super().__init__(key, anchors)
        self.paths = list(paths)
        self.follow = follow
        self.remember = remember  # where the index is saved (`saved.py`); None: never
        self.saved_records = -1  # the records the saved index holds (-1: none saved or restored)
        self.saved_checked = -1  # the bytes whose chain it holds as checked
        self.saved_at = 0.0
        self.files: list[OpenedFile] = []
        # The chunks read last, as read (first record number, records, start offset, bytes): they
        # hold the last RECENT records at least, for the live stream; a line is cut from its chunk
        # only when it is asked for, so that a year read at the first open copies none.
        self.tail: deque[tuple[int, int, int, bytes]] = deque()
        self.chain = FilesChain(self)
        # The last file, followed across rotation and truncation (the senders' follower too).
        self.followed = Follower(self.paths[-1]) if self.paths else None

    # ---- reading

    def catch_up(self) -> None:
        """Read what the files hold that was not read yet (the first time: all of it)."""
        if not self.files:
            collecting = gc.isenabled()
            # The records read make no cycles: the collector would only walk the growing sums again
            # and again (a twentieth of the first open's time).
            gc.disable()
            try:
                self._first_read()
            finally:
                if collecting:
                    gc.enable()
            # The index lives as long as the console: set apart from what the collector walks, so
            # that no view pays for walking a year's sums once the collector runs again.
            gc.freeze()
            self._watch()
            return
        current = self.files[-1]
        followed = self._followed()
        if followed is not None and followed.truncated(current.position):
            # Truncated in place (copytruncate), maybe grown again since: read anew from its start.
            current.position = current.checked = current.checked_lines = current.checked_at = 0
            current.first_record, current.first_fault = len(self.index), None
        self._read_new(current, last=True)
        if followed is not None:
            self._after_rotation(current, followed)
            followed.keep_head(self.files[-1].position)

    def _first_read(self) -> None:
        restored = self._restore()
        for path in self.paths:
            if not path.is_file():
                continue
            opened = restored.pop(0) if restored else self._open(path)
            if not opened.compressed or opened.position == 0:  # a compressed rotation read once is whole
                self._read_new(opened, last=path == self.paths[-1])

    def _followed(self) -> Follower | None:
        """The follower of the last file, when it is followed (a plain file, `follow`)."""
        if not self.follow or not self.files or self.files[-1].compressed:
            return None
        return self.followed

    def _watch(self) -> None:
        """Follow the last file read from here on."""
        followed = self._followed()
        if followed is not None:
            followed.watch(self.files[-1].handle.fileno())
            followed.keep_head(self.files[-1].position)

    def _after_rotation(self, current: OpenedFile, followed: Follower) -> None:
        # The path names another file (none: between logrotate's move and Tollgate's reopening).
        if followed.moved():
            live = self.paths[-1]
            rotated = live.with_name(live.name + ".1")
            if rotated.is_file() and rotated.stat().st_ino == current.inode:
                current.path = rotated  # named as it is now
            self._read_new(current, last=False)  # what is left of it: a line cut there stays cut
            self._read_new(self._open(live), last=True)
            self._watch()

    def _open(self, path: Path) -> OpenedFile:
        raw = path.open("rb")
        inode = os.fstat(raw.fileno()).st_ino
        compressed = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        # Kept open while the console runs (`close`): a record is read again from its place.
        handle: IO[bytes] = gzip.open(raw, "rb") if compressed else raw  # type: ignore[assignment]  # noqa: SIM115
        opened = OpenedFile(path, handle, compressed, inode, first_record=len(self.index))
        self.files.append(opened)
        return opened

    def _read_new(self, opened: OpenedFile, last: bool) -> None:
        """The file's whole lines from `position` on. A line without its newline is one being
        written, in the followed file; in any other it is cut, and read (and shown) as such."""
        number = self.files.index(opened)
        growing = last and self.follow and not opened.compressed
        pending = b""
        while True:
            if opened.compressed:
                data = pending + opened.handle.read(CHUNK)
                start = opened.position
            else:
                data = os.pread(opened.handle.fileno(), CHUNK, opened.position)
                start = opened.position
            ended = len(data) - len(pending) < CHUNK
            cut = data.rfind(b"\n") + 1
            if ended and not growing:
                cut = len(data)
            if cut:
                with self.lock:
                    self._lines(number, opened, start, data, cut)
                    self.grew.notify_all()
                opened.position = start + cut
            pending = data[cut:] if opened.compressed else b""
            if ended:
                return
            if not cut and (len(pending) >= CHUNK or not opened.compressed):
                # A line longer than what is read at once: listed as malformed, and read past.
                end = self._long_line_end(opened, start, start + len(data), growing)
                if end is None:
                    return  # still being written: looked at again at the next poll
                with self.lock:
                    self.index.add_long(number, start, end[0] - start)
                    opened.records += 1
                    self.grew.notify_all()
                opened.position, pending = end

    def _long_line_end(self, opened: OpenedFile, start: int, scanned: int, growing: bool) -> tuple[int, bytes] | None:
        """Where the line from `start`, longer than CHUNK, ends (after its newline), and what of a
        compressed file was read after it; None while it is being written (where it was looked
        for is kept: the next poll looks on from there). Read a chunk at a time, never whole."""
        if opened.long_scan is not None and opened.long_scan[0] == start:
            scanned = max(scanned, opened.long_scan[1])
        while True:
            data = opened.handle.read(CHUNK) if opened.compressed else os.pread(opened.handle.fileno(), CHUNK, scanned)
            newline = data.find(b"\n")
            if newline != -1:
                opened.long_scan = None
                return scanned + newline + 1, data[newline + 1 :] if opened.compressed else b""
            scanned += len(data)
            if len(data) < CHUNK:
                if growing:
                    opened.long_scan = (start, scanned)
                    return None
                opened.long_scan = None
                return scanned, b""  # the file's last line, cut

    def _lines(self, number: int, opened: OpenedFile, start: int, data: bytes, cut: int) -> None:
        index = self.index
        first = len(index)
        opened.lost += index.add_lines(number, start, data, cut, opened.instances)
        added = len(index) - first
        opened.records += added
        if not added:
            return
        tail = self.tail
        tail.append((first, added, start, data))
        while len(tail) > 1 and len(index) - tail[1][0] >= RECENT:
            tail.popleft()  # the chunks after it hold the last RECENT records

    def recent(self, number: int) -> bytes | None:
        """Record `number`'s line, when it is in a chunk read last."""
        for first, records, start, data in reversed(self.tail):
            if number >= first + records:
                return None
            if number >= first:
                at = self.index.offsets[number] - start
                return data[at : data.find(b"\n", at) + 1 or len(data)]
        return None

    # ---- the index remembered

    def _restore(self) -> list[OpenedFile]:
        """The files the saved index covers, opened where it stopped reading them; none (and a
        fresh index) when there is no saved index or it does not fit the files as they are."""
        if self.remember is None:
            return []
        found = saved.read(self.remember)
        if found is None:
            return []
        header, data = found
        existing = [path for path in self.paths if path.is_file()]
        try:
            with data:
                files = header["files"]
                if len(files) > len(existing):
                    return []
                for entry, path in zip(files, existing, strict=False):
                    opened = self._open(path)
                    if saved.fingerprint(opened.handle, opened.compressed, entry["position"]) != entry["fingerprint"]:
                        raise ValueError("another file")
                    opened.position, opened.records, opened.lost = entry["position"], entry["records"], entry["lost"]
                    opened.first_record = sum(f.records for f in self.files[:-1])
                    opened.instances = dict(entry["instances"])
                index = saved.restore_index(header["index"], data)
        except (OSError, ValueError, KeyError, TypeError):
            for opened in self.files:
                opened.handle.close()
            self.files = []
            return []
        self.index = index
        self.saved_records = len(index)
        self.saved_at = time.monotonic()
        self._restore_chain(header.get("chain"))
        return list(self.files)

    def _restore_chain(self, state: Any) -> None:
        """The chain as far as it was checked when the index was saved, when each file still holds
        the last line then checked as it was (its start and hash); else it is checked afresh."""
        if state is None:
            return
        names = [str(f.path) for f in self.files]
        try:
            verifier = restored_verifier(
                state["verifier"], self.verifier.key, lambda f: _named(names, f), self.verifier.anchors
            )
            marks = state["files"]
            if len(marks) != len(self.files):
                raise ValueError("other files")
            for opened, mark in zip(self.files, marks, strict=True):
                if (
                    not 0 <= mark["checked"] <= opened.position
                    or saved.check_mark(opened.handle, opened.compressed, mark["checked"], mark["at"]) != mark["mark"]
                ):
                    raise ValueError("changed since")
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            return
        for opened, mark in zip(self.files, marks, strict=True):
            opened.checked, opened.checked_lines, opened.checked_at = mark["checked"], mark["lines"], mark["at"]
            lines = [f.place.line for f in verifier.faults if f.place.file == str(opened.path)]
            opened.first_fault = min(lines, default=None)
        self.verifier = verifier
        self.saved_checked = sum(f.checked for f in self.files)

    def save(self, due: bool = False) -> None:
        """Save the index and the chain's state beside the audit when records came or were checked
        since they were last saved (`due`: and SAVE_EVERY_S has passed since, or the chain has just
        been checked to its end). Called by the thread that reads the files; a directory the console
        cannot write to leaves the index unsaved."""
        checked = sum(f.checked for f in self.files)
        if (
            self.remember is None
            or not self.files
            or (len(self.index), checked) == (self.saved_records, self.saved_checked)
        ):
            return
        recent = time.monotonic() - self.saved_at < SAVE_EVERY_S
        if due and self.saved_records >= 0 and recent and (self.checking or len(self.index) != self.saved_records):
            return
        with self.lock:  # the views wait meanwhile: the columns are written as they are, not copied
            files = [{"path": str(f.path), "position": f.position, "records": f.records, "lost": f.lost,
                      "instances": f.instances, "fingerprint": saved.fingerprint(f.handle, f.compressed, f.position)}
                     for f in self.files]  # fmt: skip
            records = len(self.index)
            header = {"files": files, "index": saved.index_state(self.index), "chain": self._chain_state()}
            try:
                saved.write(self.remember, header, self.index)
            except OSError:
                return
        self.saved_records, self.saved_checked, self.saved_at = records, checked, time.monotonic()

    def _chain_state(self) -> dict[str, Any] | None:
        """The verifier's state and, per file, how far it has read and the mark of the last line it
        checked; None while a compressed file is half checked (its reader cannot be saved)."""
        if any(f.compressed and (f.checker is not None or f.check_pending) for f in self.files):
            return None
        names = [str(f.path) for f in self.files]
        return {
            "verifier": saved_state(self.verifier, lambda f: names.index(f) if f in names else f),
            "files": [{"checked": f.checked, "lines": f.checked_lines, "at": f.checked_at,
                       "mark": saved.check_mark(f.handle, f.compressed, f.checked, f.checked_at)} for f in self.files],
        }  # fmt: skip

    # ---- the chain, checked behind the index (`FilesChain`)

    def verify_pending(self) -> bool:
        return self.chain.verify_pending()

    def unverified(self) -> list[range]:
        return self.chain.unverified()

    @property
    def checking(self) -> bool:
        return self.chain.checking

    # ---- serving records again

    def malformed(self, number: int, length: int) -> dict[str, Any]:
        """What is shown of record `number`, a line of `length` bytes that is no record: the
        console's own marker, naming its place."""
        opened = self.files[self.index.file_of(number)]
        return {"event": BAD_LINE, "file": str(opened.path), "offset": self.index.offsets[number], "length": length}

    def record(self, number: int, line: bytes | None = None) -> dict[str, Any]:
        """`Source.record`; a line longer than CHUNK, never read again, as its marker."""
        length = self.index.long_lines.get(number)
        if length is not None:
            return self.malformed(number, length)
        return super().record(number, line)

    def line(self, number: int) -> bytes:
        """Record `number`'s line as written; for a line longer than CHUNK, never read again, the
        JSON of its `malformed` marker."""
        length = self.index.long_lines.get(number)
        if length is not None:
            return orjson.dumps(self.malformed(number, length)) + b"\n"
        held = self.recent(number)
        if held is not None:
            return held
        index = self.index
        opened = self.files[index.file_of(number)]
        offset = index.offsets[number]
        if opened.compressed:
            with gzip.open(opened.path, "rb") as f:
                f.seek(offset)
                return f.readline()
        line, size = b"", LINE_READ
        while True:  # to the line's end, or the file's (a cut last line)
            data = os.pread(opened.handle.fileno(), size, offset + len(line))
            end = data.find(b"\n")
            if end != -1:
                return line + data[: end + 1]
            line += data
            if len(data) < size:
                return line
            size *= 2

    def state(self) -> list[dict[str, Any]]:
        """Each file and instance: its records, whole or its faults, its last checkpoint."""
        verifier = self.verifier
        runs = verifier.runs
        rows = []
        for opened in self.files:
            name = str(opened.path)
            faults = [f"{f.place}: {f.what}" for f in verifier.faults if f.place.file == name]
            counted: list[tuple[str | None, int]] = [*sorted(opened.instances.items())] or [(None, 0)]
            for instance, records in counted:
                run = runs.get(instance) if instance is not None else None
                checkpoint = run.checkpoint if run is not None and run.checkpoint is not None else None
                anchor = verifier.anchor_view(instance) if instance is not None else None
                # Records with no anchor in time, as things stand: a fault of the file that holds the first.
                missed = [anchor["missed"]] if anchor is not None and anchor["missed"].startswith(f"{name}:") else []
                rows.append({
                    "file": name, "instance": instance, "records": records,
                    "state": "fault" if faults or missed else "checking" if opened.checked < opened.position
                    else "whole",
                    "faults": faults + missed, "anchor": anchor,
                    "anchor_gaps": None if anchor is None else anchor["gaps"],
                    "last_checkpoint": None if checkpoint is None else checkpoint.ts,
                    "signed": None if verifier.key is None or run is None else run.signed > 0,
                    "worker_lost": opened.lost,
                    "last_record": None if run is None or run.last is None else run.last.ts,
                })  # fmt: skip
        return rows

    def close(self) -> None:
        try:
            self.save()
        except OSError:
            pass  # a file gone meanwhile: the index saved last stays
        for opened in self.files:
            opened.handle.close()


class FilesChain:
    """The chain of the files' lines, checked behind the reading (`AuditFiles.catch_up`), a chunk
    at a time, by one live `Verifier` (the source's: a saved index restores it); which records come
    after a fault of it."""

    def __init__(self, source: AuditFiles) -> None:
        self.source = source

    def verify_pending(self) -> bool:
        """Check the chain of up to `CHUNK` bytes of the lines indexed but not checked yet; whether
        some are left. Apart from reading, so that the views are ready before the whole chain of a
        year of records has been checked (the Audit view says `checking` meanwhile)."""
        for opened in self.source.files:
            if opened.checked < opened.position:
                self._check_chunk(opened)
                return True
        return False

    def _check_chunk(self, opened: OpenedFile) -> None:
        long = None if opened.compressed else self._long_line_at(opened, opened.checked)
        if long is not None:  # never parsed: a fault of its own, and the chain goes on after it
            with self.source.lock:
                opened.checked_lines += 1
                self.source.verifier.fault(
                    Place(str(opened.path), opened.checked_lines),
                    f"a line of {long} bytes, longer"
                    f" than the console reads at once ({CHUNK}): not read, changed or inserted",
                )
                opened.checked_at = opened.checked
                opened.checked += long
                self._faulted(opened, opened.checked_lines)
            return
        size = min(CHUNK, opened.position - opened.checked)
        if opened.compressed:
            if opened.checker is None:
                opened.checker = cast(IO[bytes], gzip.open(opened.path, "rb"))  # noqa: SIM115 (closed once read)
            fresh = opened.checker.read(size)
        else:
            fresh = os.pread(opened.handle.fileno(), size, opened.checked)
        data = opened.check_pending + fresh
        whole = opened.checked + len(fresh) >= opened.position  # every indexed line is in `data`
        cut = len(data) if whole else data.rfind(b"\n") + 1
        with self.source.lock:
            self._check(opened, data[:cut], opened.checked)
        if opened.compressed:
            opened.checked += len(fresh)
            opened.check_pending = data[cut:]
        else:
            opened.checked += cut - len(opened.check_pending)
        if whole and opened.checker is not None:
            opened.checker.close()
            opened.checker = None

    def _check(self, opened: OpenedFile, data: bytes, at: int) -> None:
        """The lines of `data`, which starts at byte `at` of a plain file."""
        verifier, name = self.source.verifier, str(opened.path)
        line_no = opened.checked_lines
        faults = len(verifier.faults)
        for line in data.splitlines(keepends=True):
            if not line.isspace():
                line_no += 1
                verifier.read(Place(name, line_no), line)
                opened.checked_at = at
                if len(verifier.faults) != faults:
                    faults = len(verifier.faults)
                    self._faulted(opened, line_no)
            at += len(line)
        opened.checked_lines = line_no

    def _faulted(self, opened: OpenedFile, line_no: int) -> None:
        """A fault found while line `line_no` of the file was read: its records from the fault's
        own line on (a line of this file it names, else this one) are unverified."""
        fault = self.source.verifier.faults[-1]
        if fault.place.file == str(opened.path) and fault.place.line <= line_no:
            line_no = fault.place.line
        if opened.first_fault is None or line_no < opened.first_fault:
            opened.first_fault = line_no

    def unverified(self) -> list[range]:
        """The numbers of the records after a fault of the chain: from the first line of a file a
        fault names to the file's end (the chain is whole again in a file with no fault)."""
        found = []
        for i, opened in enumerate(self.source.files):
            if opened.first_fault is not None:
                end = (
                    self.source.files[i + 1].first_record if i + 1 < len(self.source.files) else len(self.source.index)
                )
                found.append(range(opened.first_record + opened.first_fault - 1, end))
        return found

    def _long_line_at(self, opened: OpenedFile, offset: int) -> int | None:
        """The length of the line longer than CHUNK at `offset` of the file, if one starts there."""
        index = self.source.index
        if not index.long_lines:
            return None
        number = self.source.files.index(opened)
        for record, length in index.long_lines.items():
            if index.offsets[record] == offset and index.file_of(record) == number:
                return length
        return None

    @property
    def checking(self) -> bool:
        return any(f.checked < f.position for f in self.source.files)


def _named(names: list[str], saved: Any) -> str:
    """A file's name as saved with the chain's state: its number among the files read (their
    names now), or a name."""
    return names[saved] if type(saved) is int else str(saved)
