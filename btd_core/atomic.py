"""Writing report files atomically: a reader sees the whole file or none of it.

A file written here gets the permissions any program's new file gets, ``0o666`` less
the process umask (``0o644`` with the usual umask 022, ``0o600`` with 077), so a report
is as readable as the user asked for, not private by accident as
:func:`tempfile.mkstemp`'s ``0o600`` would make it.  The umask is never read: the
temporary file is created with mode ``0o666`` and the kernel applies the umask itself
(and a folder's default ACL, where there is one), which is exact, needs no lock and
cannot race with other threads, as reading it with ``os.umask(0)`` and setting it back
could (another thread's file created in between would get mode 0666).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

NEW_FILE_MODE = 0o666
"""Asked of the kernel for each new file; the process umask takes its bits away."""
_OPEN_FLAGS = (
    os.O_WRONLY
    | os.O_CREAT
    | os.O_EXCL  # never an existing file, nor a link planted under the temporary name
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_NOINHERIT", 0)
    | getattr(os, "O_BINARY", 0)
)
_ATTEMPTS = 100


def _create_temporary(path: Path) -> tuple[int, Path]:
    """A new, empty temporary file beside ``path`` (``.NAME.XXXXXXXXXXXX.tmp``), open for
    writing; its mode is ``0o666`` less the umask."""
    for _ in range(_ATTEMPTS):
        temp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            return os.open(temp, _OPEN_FLAGS, NEW_FILE_MODE), temp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path} after {_ATTEMPTS} tries")


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder, then rename;
    the file's mode is ``0o666`` less the umask (see the module's notes)."""
    path = Path(path)
    fd, temp = _create_temporary(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return path
