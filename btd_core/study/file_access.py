"""Reading files safely: regular files only, never blocking, never writing (runtime world).

Shared by :mod:`btd_core.study.discovery` (headers) and :mod:`btd_core.study.pixels` (pixels).
"""

from __future__ import annotations

import errno
import math
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, BinaryIO

import numpy as np

from btd_core.errors import BtdError
from btd_core.safe_text import printable
from btd_core.study.limits import DEFAULT_LIMITS, StudyLimits

REASON_NOT_REGULAR = "not a regular file"
REASON_PERMISSION = "permission denied"
REASON_SYMLINK_LOOP = "symlink loop (too many levels of symbolic links)"
READ_CHUNK = 1 << 20
"""Bytes read per step of a long read that checks for a stop between steps (1 MiB)."""
IMAGE_FORMATS = ("PNG", "JPEG", "TIFF")
"""Pillow formats read as images (a multi-picture JPEG gives its first picture)."""


class NotRegularFileError(BtdError, OSError):
    """The path is not a regular file (FIFO, socket, device, folder)."""


class Cancelled(BtdError):
    """The caller's ``should_stop`` asked to stop (raised inside long loops, caught by
    :func:`btd_core.study.discovery.discover`)."""


StopCheck = Callable[[], bool]


def check_stop(should_stop: StopCheck | None) -> None:
    """Raise :class:`Cancelled` when ``should_stop`` is given and returns true."""
    if should_stop is not None and should_stop():
        raise Cancelled("stopped")


class ClampedReader:
    """A read-only, seekable view of a binary file from ``offset`` to its end.

    Reads never ask the file for more than what is left in it, so a length field that
    claims gigabytes (read by pydicom or zipfile with ``read(length)``) cannot make
    Python allocate gigabytes for a small file (``BufferedReader.read(n)`` allocates
    ``n`` bytes before it reads).  The view keeps its own position: while it is in use,
    nothing else may move the file's.
    """

    def __init__(self, raw: IO[bytes], offset: int = 0) -> None:
        self._raw = raw
        self._offset = offset
        self.name = getattr(raw, "name", None)
        self._end = raw.seek(0, os.SEEK_END)
        self._pos = raw.seek(offset)

    @property
    def size(self) -> int:
        """Bytes from ``offset`` to the end of the file."""
        return max(self._end - self._offset, 0)

    def read(self, size: int | None = -1) -> bytes:
        left = self._end - self._pos
        if size is None or size < 0 or size > left:
            size = max(left, 0)
        data = self._raw.read(size)
        self._pos += len(data)
        return data

    def seek(self, pos: int, whence: int = 0) -> int:
        if whence == os.SEEK_SET:
            pos += self._offset
        self._pos = self._raw.seek(pos, whence)
        return self._pos - self._offset

    def tell(self) -> int:
        return self._pos - self._offset

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True


# --------------------------------------------------------------------------- file access


def open_regular_file(path: Path, nofollow: bool = False) -> BinaryIO:
    """Open a regular file for reading without blocking, following symlinks unless
    ``nofollow`` (then a symlink as the last component fails with ``ELOOP``).

    ``O_NONBLOCK`` keeps a FIFO swapped in after the ``lstat`` check from blocking the
    open, the ``fstat`` check then refuses it; ``O_NOATIME`` (when permitted) keeps
    the access time unchanged.  Raises :class:`NotRegularFileError` or ``OSError``.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    flags |= getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    if nofollow:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags | getattr(os, "O_NOATIME", 0))
    except PermissionError:  # O_NOATIME needs ownership: retry without it
        fd = os.open(path, flags)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegularFileError(errno.EINVAL, REASON_NOT_REGULAR, str(path))
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_npy_header(fp: BinaryIO) -> tuple[tuple[int, ...], np.dtype, bool, int]:
    """Shape, dtype, Fortran order and data offset of the ``.npy`` file open in ``fp``."""
    fp.seek(0)
    version = np.lib.format.read_magic(fp)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
    else:
        raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")
    return tuple(int(n) for n in shape), np.dtype(dtype), bool(fortran), fp.tell()


def npy_problem(
    shape: tuple[int, ...],
    dtype: np.dtype,
    data_bytes: int,
    limits: StudyLimits | None = None,
) -> str | None:
    """Why an array cannot be read as slices (plain words), or ``None`` when it can.

    ``data_bytes``: bytes after the header.  Sizes are multiplied as Python integers
    (``np.prod`` would wrap a shape such as (2^62, 4, 4) round to 0); a slice larger
    than ``limits`` allows gives a reason that starts with ``refused:``.
    """
    limits = limits or DEFAULT_LIMITS
    if dtype.hasobject:
        return "object arrays are not supported (they need pickle)"
    if dtype.kind not in "biuf" or dtype.itemsize > 16:
        return f"unsupported data type {dtype}"
    if len(shape) not in (2, 3):
        return f"expected a 2-D slice or a 3-D volume, found shape {shape}"
    if any(n < 0 for n in shape):
        return f"negative size in shape {shape}"
    if 0 in shape:
        return f"empty array (shape {shape})"
    frames, rows, columns = (1, *shape) if len(shape) == 2 else shape
    refused = limits.frame_problem(rows, columns) or limits.frames_problem(frames)
    if refused:
        return refused
    expected = math.prod(int(n) for n in shape) * dtype.itemsize
    if data_bytes < expected:
        return f"truncated: {expected} bytes of array data expected, {data_bytes} found"
    return None


def short_message(exc: BaseException, limit: int = 160) -> str:
    """First line of an exception's message (or its type name), non-printable characters
    escaped, at most ``limit`` characters."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = printable(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def os_reason(exc: OSError) -> str:
    """A plain reason for an ``OSError`` met while reading a file."""
    if isinstance(exc, PermissionError):
        return REASON_PERMISSION
    if exc.errno == errno.ELOOP:
        return REASON_SYMLINK_LOOP
    return f"could not be read: {exc.strerror or short_message(exc)}"


def walk_entries(root: Path) -> Iterator[tuple[Path, str, str | None]]:
    """``(path, relpath, error)`` for every non-folder entry, depth first, sorted by name.

    Symlinks are yielded as entries (never followed); a folder that cannot be listed
    is yielded with an error message.
    """
    stack: list[tuple[Path, str]] = [(root, "")]
    while stack:
        folder, rel = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            yield (
                folder,
                rel.rstrip("/") or ".",
                f"{os_reason(exc)}: the folder could not be listed",
            )
            continue
        subfolders = []
        for entry in entries:
            relpath = f"{rel}{entry.name}"
            try:
                is_folder = entry.is_dir(follow_symlinks=False)
            except OSError:
                is_folder = False
            if is_folder:
                subfolders.append((Path(entry.path), f"{relpath}/"))
            else:
                yield Path(entry.path), relpath, None
        stack.extend(reversed(subfolders))
