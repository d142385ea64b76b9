"""One append-only file followed by its path across rotation: the one follower of the audit file,
for the senders' `Tail` (`senders/file_sender.py`) and the console's `AuditFiles`
(`console/follow.py`).

Two things may become of the file a reader has open. logrotate's `create` renames it away and the
writer makes a new one at the path (`moved`): the reader reads what is left of the old one, then
the new one from its start. copytruncate cuts it short in place (`truncated`): the reader reads it
again from its start. A file cut short and grown again past where reading stopped before the next
look is told by its first bytes, kept as read (`keep_head`), which an append-only file never
changes.

The follower holds the open file and what tells it apart; where reading stands is the reader's
own (each counts it its own way)."""

from __future__ import annotations

import os

HEAD = 4096  # the first bytes of the file compared at each look: a file truncated in place differs there


def renamed(path: str | os.PathLike[str], identity: tuple[int, int]) -> os.stat_result | None:
    """The file `path` names now, when it is another than the one of `identity` (device, inode):
    logrotate's `create` renamed that one away and the writer made a new one. None while it is the
    same file, or while none is there (renamed, the new one not yet made: the writer makes it at its
    next record)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return None if (st.st_dev, st.st_ino) == identity else st


class Follower:
    """The file open at `path` (`fd`, None while there is none) and what tells it apart: its
    identity (device, inode) and its first bytes read. `open` opens (and owns) what the path names;
    `watch` follows a file its reader opened and keeps open itself."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = path
        self.fd: int | None = None
        self.identity: tuple[int, int] | None = None
        self._head = b""
        self._owned = False

    def watch(self, fd: int) -> None:
        """Follow the open file `fd` (the reader's to close) from here on."""
        st = os.fstat(fd)
        self.fd, self.identity, self._head, self._owned = fd, (st.st_dev, st.st_ino), b"", False

    def open(self, path: str | os.PathLike[str] | None = None) -> bool:
        """Open `path` (the followed path when None) and follow it, the follower's to close;
        whether a file was there. The file open before is closed when the follower opened it."""
        try:
            fd = os.open(self.path if path is None else path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            return False
        self.close()
        self.watch(fd)
        self._owned = True
        return True

    def close(self) -> None:
        """Let the open file go (closed when the follower opened it)."""
        if self.fd is not None and self._owned:
            os.close(self.fd)
        self.fd, self.identity, self._head, self._owned = None, None, b"", False

    def moved(self) -> bool:
        """Whether the path names another file than the open one (with none open: any file)."""
        if self.identity is None:
            return os.path.exists(self.path)
        return renamed(self.path, self.identity) is not None

    def truncated(self, offset: int) -> bool:
        """Whether the open file is no longer what was read of it up to `offset`: shorter than that,
        or its first bytes other than those read (grown again since it was cut). When so its first
        bytes are forgotten: the reader reads it again from its start."""
        fd = self.fd
        if fd is None:
            return False
        head = self._head
        if os.fstat(fd).st_size < offset or (head and os.pread(fd, len(head), 0) != head):
            self._head = b""
            return True
        return False

    def keep_head(self, offset: int) -> None:
        """Keep the file's first bytes read (up to `offset`, at most HEAD), for `truncated`."""
        fd = self.fd
        if fd is not None and len(self._head) < HEAD and offset > len(self._head):
            self._head = os.pread(fd, min(HEAD, offset), 0)
