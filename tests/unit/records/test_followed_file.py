"""The one follower of a rotated file: what it tells of the file it follows (renamed and a new one
made, truncated, truncated and grown again, reopened), with real files renamed and cut."""

from __future__ import annotations

import os
from pathlib import Path

from tollgate.records.followed_file import HEAD, Follower, renamed


def test_a_file_renamed_and_made_again_is_another(tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    audit.write_bytes(b"1\n")
    follower = Follower(audit)
    assert follower.open()
    first = follower.identity
    assert not follower.moved()
    audit.rename(tmp_path / "audit.jsonl.1")
    assert not follower.moved()  # renamed, the new one not made yet: nothing to follow yet
    audit.write_bytes(b"2\n")
    assert follower.moved()
    assert first is not None and renamed(audit, first) is not None
    assert follower.open()  # reopened: the new file, the old one closed (the follower opened it)
    assert follower.identity != first and not follower.moved()
    assert os.pread(follower.fd, 10, 0) == b"2\n"  # type: ignore[arg-type]
    follower.close()
    assert follower.fd is None


def test_none_there_at_first_then_made(tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    follower = Follower(audit)
    assert not follower.open()
    assert follower.fd is None and not follower.moved() and not follower.truncated(10)
    audit.write_bytes(b"")
    assert follower.moved()
    assert follower.open()


def test_cut_shorter_or_cut_and_grown_again_is_truncated(tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    audit.write_bytes(b"first\nsecond\n")
    follower = Follower(audit)
    assert follower.open()
    follower.keep_head(13)
    with audit.open("ab") as f:
        f.write(b"third\n")  # appended: the same file
    assert not follower.truncated(13) and not follower.moved()
    # copytruncate: the same file, shorter than what was read.
    os.truncate(audit, 0)
    assert follower.truncated(13)
    audit.write_bytes(b"x\n")
    follower.keep_head(2)
    assert not follower.truncated(2)
    # Cut and grown again past where reading stood before the next look: its first bytes tell.
    audit.write_bytes(b"other lines, longer than before\n")
    assert follower.truncated(2)
    assert not follower.truncated(0)  # its first bytes forgotten: read again from the start
    assert not follower.moved()  # cut in place, never renamed


def test_only_the_first_bytes_are_kept(tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    audit.write_bytes(b"a" * (HEAD * 3))
    follower = Follower(audit)
    assert follower.open()
    follower.keep_head(HEAD * 3)
    with audit.open("r+b") as f:
        f.seek(HEAD + 10)
        f.write(b"b")  # past what is compared: not looked at
    assert not follower.truncated(HEAD * 3)
    with audit.open("r+b") as f:
        f.write(b"b")
    assert follower.truncated(HEAD * 3)


def test_a_file_watched_stays_its_readers(tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    audit.write_bytes(b"1\n")
    with audit.open("rb") as handle:
        follower = Follower(audit)
        follower.watch(handle.fileno())
        audit.rename(tmp_path / "audit.jsonl.1")
        audit.write_bytes(b"2\n")
        assert follower.moved()
        follower.close()  # not the follower's to close
        assert handle.read() == b"1\n"
