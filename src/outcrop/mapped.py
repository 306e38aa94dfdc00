"""Files that several processes of one server map into memory and change in place.

``open_mapped`` reserves the file's blocks before mapping it: a store into a mapped hole (a sparse file)
on a full disk kills the process with SIGBUS, where a reservation that cannot be made is an ``OSError``
when the file is opened (a file system that reserves nothing gets a sparse file). The file only ever grows, so processes opening it at once keep each other's
contents. ``locked`` holds the file's exclusive ``flock`` for a read-and-change.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import mmap
import os
from collections.abc import Iterator
from pathlib import Path


def open_mapped(path: Path, size: int, *, create: bool = True) -> tuple[int, mmap.mmap]:
    """The first ``size`` bytes of ``path`` (made, or grown, with its blocks reserved), mapped shared; the
    open descriptor comes with the map, for ``locked`` (or to be closed: the map stays valid)."""
    fd = os.open(path, os.O_RDWR | (os.O_CREAT if create else 0), 0o600)
    try:
        try:
            os.posix_fallocate(fd, 0, size)
        except OSError as e:
            if e.errno == errno.ENOSPC:
                raise
            # A file system that reserves nothing: grown as a sparse file, as on any other system.
            if os.fstat(fd).st_size < size:
                os.ftruncate(fd, size)
        return fd, mmap.mmap(fd, size)
    except BaseException:
        os.close(fd)
        raise


@contextlib.contextmanager
def locked(fd: int) -> Iterator[None]:
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
