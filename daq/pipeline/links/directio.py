"""Appending to a file with direct I/O (``O_DIRECT``): the disk reads the bytes from one aligned
staging buffer, the kernel copies nothing into its page cache.

A buffered ``write`` costs the kernel about a nanosecond per byte (a page-cache page found or
made for every 4 KiB, the bytes copied into it, the page marked dirty and written back later); a
DAQ journal writes every byte it receives. With direct I/O the bytes are copied once, by the
caller, into a page-aligned staging buffer, and whole pages go to the disk from there. The last
partial page of each flush goes through the page cache (a second, buffered descriptor), so the
file always holds exactly the bytes appended, and a killed process loses no more than with
buffered writes; the next direct write of that page replaces it (Linux keeps the two coherent).

:func:`open_direct` returns None where direct I/O is not there (tmpfs, another OS): the caller
then writes buffered, as before.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Sequence

PAGE_BYTES = 4096
"""Alignment of direct writes: offsets, lengths and the buffer's address (a multiple of any
disk's logical block)."""
STAGE_BYTES = 8 << 20
"""Bytes of the staging buffer: the most one direct write carries."""


class DirectAppender:
    """Append to the file of ``fd`` (opened buffered, read and write, without O_APPEND), whose
    direct descriptor is ``direct_fd``, from ``size`` bytes on."""

    def __init__(self, fd: int, direct_fd: int, size: int) -> None:
        self.fd, self.direct_fd = fd, direct_fd
        self._stage = mmap.mmap(-1, STAGE_BYTES)
        self._view = memoryview(self._stage)
        self._at = size - size % PAGE_BYTES
        """File offset of the stage's first byte (page-aligned)."""
        self._fill = size % PAGE_BYTES
        """Bytes in the stage: the file's last partial page, then what is appended."""
        if self._fill:
            self._view[:self._fill] = os.pread(fd, self._fill, self._at)

    @property
    def size(self) -> int:
        """Bytes of the file, all appended ones included."""
        return self._at + self._fill

    def write(self, pieces: Sequence[bytes | memoryview]) -> int:
        """Append ``pieces`` (whole pages direct, the last partial page buffered); returns the
        bytes appended. An OSError leaves the file with a prefix of them."""
        n = 0
        for piece in pieces:
            view = memoryview(piece).cast("B")
            start = 0
            while start < len(view):
                take = min(len(view) - start, STAGE_BYTES - self._fill)
                self._view[self._fill:self._fill + take] = view[start:start + take]
                self._fill += take
                start += take
                if self._fill == STAGE_BYTES:
                    self._write_pages()
            n += len(view)
        self._write_pages()
        if self._fill:
            os.pwrite(self.fd, self._view[:self._fill], self._at)
        return n

    def _write_pages(self) -> None:
        """The stage's whole pages to the disk (direct); the partial page moves to the front."""
        whole = self._fill - self._fill % PAGE_BYTES
        done = 0
        while done < whole:
            done += os.pwrite(self.direct_fd, self._view[done:whole], self._at + done)
        rest = self._fill - whole
        self._view[:rest] = self._view[whole:self._fill]
        self._at += whole
        self._fill = rest

    def close(self) -> None:
        self._view.release()
        self._stage.close()
        os.close(self.direct_fd)


def open_direct(path: str | os.PathLike, fd: int, size: int) -> DirectAppender | None:
    """A direct appender for the file ``path`` already open as ``fd`` (buffered, read and write,
    without O_APPEND) with ``size`` bytes; None where the file system or the OS has no direct I/O."""
    flag = getattr(os, "O_DIRECT", 0)
    if not flag:
        return None
    try:
        direct_fd = os.open(path, os.O_WRONLY | flag)
    except OSError:
        return None
    appender = DirectAppender(fd, direct_fd, size)
    if not _accepts_direct_writes(appender):
        appender.close()
        return None
    return appender


def _accepts_direct_writes(appender: DirectAppender) -> bool:
    """Whether a direct write goes through (some file systems open with O_DIRECT and refuse
    the writes): the file's last page written as it is, the file then cut to its size."""
    try:
        os.pwrite(appender.direct_fd, appender._view[:PAGE_BYTES], appender._at)
        os.ftruncate(appender.fd, appender.size)
    except OSError:
        return False
    return True
