"""Files only this user may change: the pair cache, the SQLite lock and data folders.

A cache or lock in a folder other users can write (MCDATA_CACHE_DIR=/tmp, a shared data folder) could
be planted, replaced or swapped for a symlink by them. mcdata creates its folders 0700 and its files
0600 whatever the umask, and trusts an existing file only if this user owns it and nobody else can
write it; a folder others can write is acceptable only when it is sticky (like /tmp), where nobody can
replace a file of ours.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


class UnsafePathError(OSError):
    """A path that other users could have written or replaced."""


def make_private_dir(folder: Path) -> None:
    """Create `folder` and any missing parents with mode 0700 (an existing folder is left as it is)."""
    missing = []
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            break
        missing.append(candidate)
    for candidate in reversed(missing):
        with contextlib.suppress(FileExistsError):  # created meanwhile by a concurrent run
            candidate.mkdir(mode=PRIVATE_DIR_MODE)


def check_folder(folder: Path) -> None:
    """Raise UnsafePathError if other users can write `folder` and it is not sticky."""
    info = folder.stat()
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not info.st_mode & stat.S_ISVTX:
        raise UnsafePathError(f"{folder} is writable by other users (and not sticky like /tmp)")


def check_file(fd: int, path: Path, root_too: bool = False) -> os.stat_result:
    """Raise UnsafePathError unless the open file is a regular file of ours (`root_too`: or of root's, who
    can change anything anyway) that nobody else can write."""
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise UnsafePathError(f"{path} is not a regular file")
    if info.st_uid != os.geteuid() and not (root_too and info.st_uid == 0):
        raise UnsafePathError(f"{path} belongs to another user (uid {info.st_uid})")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafePathError(f"{path} is writable by other users")
    return info


def open_private(path: Path, flags: int, create: bool = False) -> int:
    """Open a file of ours (never through a symlink), created 0600 if `create`; checked as check_file."""
    check_folder(path.parent)
    fd = os.open(path, flags | os.O_NOFOLLOW | (os.O_CREAT if create else 0), PRIVATE_FILE_MODE)
    try:
        check_file(fd, path)
    except BaseException:
        os.close(fd)
        raise
    return fd
