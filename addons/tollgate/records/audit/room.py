"""Whether a file's disk has room for what will be appended to it, asked before anything is
written: a start-up that would fail at its first record stops before the proxy listens."""

from __future__ import annotations

import ctypes
import errno
import os
import tempfile
from typing import Any

FALLOC_FL_KEEP_SIZE = 1  # reserve blocks past the end, the file's size and content unchanged
# What says the disk (or the user's quota, or the file's size limit) has no room.
_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def check_room(path: str, size: int = 4096) -> None:
    """OSError (ENOSPC) when the disk holding `path` cannot take `size` more bytes past its end (a
    file not there yet: in its directory, asked through a file made and removed there); nothing
    when it can, or when this cannot be asked (no Linux `fallocate`, a device, a file system that
    does not reserve)."""
    probe = None  # a new file's disk is asked through a file made beside it, removed after
    try:
        if os.path.exists(path):
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        else:
            fd, probe = tempfile.mkstemp(prefix=".tollgate-room-", dir=os.path.dirname(os.path.abspath(path)))
    except OSError:
        return  # what opens it reports why it cannot be made or written
    try:
        _ask(fd, path, size)
    finally:
        os.close(fd)
        if probe is not None:
            os.unlink(probe)


def _ask(fd: int, path: str, size: int) -> None:
    end = os.fstat(fd).st_size
    fallocate = _fallocate()
    if fallocate is None or fallocate(fd, FALLOC_FL_KEEP_SIZE, end, size) == 0:
        return
    code = ctypes.get_errno()
    if code in _FULL:
        raise OSError(code, os.strerror(code), path)


def _fallocate() -> Any:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.fallocate
    except (OSError, AttributeError):
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong)
    function.restype = ctypes.c_int
    return function
