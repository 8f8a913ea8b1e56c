"""Writing a file's new pages with direct I/O (``O_DIRECT``): the disk reads the bytes from where
they lie in page-aligned memory, the kernel copies nothing into its page cache.

A buffered ``write`` costs the kernel about a nanosecond per byte (a page-cache page found or
made for every 4 KiB, the bytes copied into it, the page marked dirty and written back later); a
DAQ journal writes every byte it receives. The journal's bytes already lie in page-aligned
memory, as the file holds them (:mod:`daq.pipeline.links.ring`), so whole pages go to the disk
from there. The last partial page of each write goes through the page cache (a second, buffered
descriptor), so the file always holds exactly the bytes appended, and a killed process loses no
more than with buffered writes; the next direct write of that page replaces it (Linux keeps the
two coherent).

:func:`open_direct` returns None where direct I/O is not there (tmpfs, another OS): the caller
then writes buffered.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

PAGE_BYTES = 4096
"""Alignment of direct writes: offsets, lengths and the buffer's address (a multiple of any
disk's logical block)."""


class DirectFile:
    """The file of ``fd`` (opened buffered, read and write, without O_APPEND) and its direct
    descriptor ``direct_fd``."""

    def __init__(self, fd: int, direct_fd: int) -> None:
        self.fd, self.direct_fd = fd, direct_fd

    def write(self, regions: Sequence[memoryview], at: int) -> int:
        """Write ``regions`` (page-aligned memory, each but the last of whole pages: the file's
        bytes from the page-aligned offset ``at`` on) there: whole pages direct, the last partial
        page buffered. Returns the bytes written; an OSError leaves the file with a prefix of
        them."""
        n = 0
        for view in regions:
            whole = len(view) - len(view) % PAGE_BYTES
            pwrite_all(self.direct_fd, view[:whole], at + n)
            if whole < len(view):
                pwrite_all(self.fd, view[whole:], at + n + whole)
            n += len(view)
        return n

    def close(self) -> None:
        os.close(self.direct_fd)


def pwrite_all(fd: int, view: memoryview, at: int) -> None:
    """Write all of ``view`` at offset ``at`` of ``fd`` (``pwrite`` may write less at once)."""
    done = 0
    while done < len(view):
        done += os.pwrite(fd, view[done:], at + done)


def open_direct(path: str | os.PathLike, fd: int, last_page: memoryview, size: int
                ) -> DirectFile | None:
    """Direct writes to the file ``path``, already open as ``fd`` (buffered, read and write,
    without O_APPEND) with ``size`` bytes; ``last_page``: page-aligned memory holding the file's
    last partial page (a whole page). None where the file system or the OS has no direct I/O."""
    flag = getattr(os, "O_DIRECT", 0)
    if not flag:
        return None
    try:
        direct_fd = os.open(path, os.O_WRONLY | flag)
    except OSError:
        return None
    direct = DirectFile(fd, direct_fd)
    if not _accepts_direct_writes(direct, last_page, size):
        direct.close()
        return None
    return direct


def _accepts_direct_writes(direct: DirectFile, last_page: memoryview, size: int) -> bool:
    """Whether a direct write goes through (some file systems open with O_DIRECT and refuse
    the writes): the file's last page written as it is, the file then cut to its size."""
    try:
        os.pwrite(direct.direct_fd, last_page[:PAGE_BYTES], size - size % PAGE_BYTES)
        os.ftruncate(direct.fd, size)
    except OSError:
        return False
    return True
