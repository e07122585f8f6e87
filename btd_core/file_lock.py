"""An exclusive lock on a lock file, held by one process at a time (:func:`hold_lock`).

POSIX ``flock`` on the open file: the kernel releases it when the holder exits, even if
killed, so no stale lock is left behind.  On Windows, ``msvcrt.locking`` on the file's
first byte.  A second holder is refused at once (``wait_s=0``: ``btd archive`` into an
output folder already in use) or waits, trying again every ``poll_s`` seconds, up to
``wait_s`` seconds or without limit (``btd demo`` while another builds the demo files).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO

from btd_core.errors import BtdError

POLL_S = 0.2
"""How often a waiting holder tries the lock again, in seconds."""


class LockBusy(BtdError):
    """Another process holds the lock (and still held it when the wait ended)."""


class HeldLock:
    """A lock file held exclusively until :meth:`release` (or the end of a ``with`` block).

    ``handle`` is the open lock file (mode ``a+``), for a holder that writes who it is.
    """

    def __init__(self, path: Path, handle: IO[str]) -> None:
        self.path = path
        self.handle = handle

    def release(self) -> None:
        """Let go of the lock and close the file (the file itself stays)."""
        if self.handle.closed:
            return
        try:
            _unlock(self.handle)
        finally:
            self.handle.close()

    def __enter__(self) -> HeldLock:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.release()


def hold_lock(
    path: Path,
    wait_s: float | None = 0.0,
    on_wait: Callable[[], None] | None = None,
    poll_s: float = POLL_S,
) -> HeldLock:
    """Take the exclusive lock of the file ``path`` (created if absent, its folder must exist).

    ``wait_s``: seconds to wait for another holder to let go (``0``: refuse at once;
    ``None``: no limit).  ``on_wait`` is called once, when the first try finds the lock
    held and the call is about to wait.

    Raises
    ------
    LockBusy
        Another process held the lock for the whole wait.
    OSError
        The lock file cannot be opened.
    """
    handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 (held until release)
    try:
        _acquire(handle, path, wait_s, on_wait, poll_s)
    except BaseException:
        handle.close()
        raise
    return HeldLock(path, handle)


def _acquire(
    handle: IO[str],
    path: Path,
    wait_s: float | None,
    on_wait: Callable[[], None] | None,
    poll_s: float,
) -> None:
    """Lock ``handle``, waiting as :func:`hold_lock` says; :class:`LockBusy` when it cannot."""
    if _try_lock(handle):
        return
    busy = LockBusy(f"another process holds the lock {path}")
    if wait_s is not None and wait_s <= 0:
        raise busy
    if on_wait is not None:
        on_wait()
    deadline = None if wait_s is None else time.monotonic() + wait_s
    while not _try_lock(handle):
        if deadline is not None and time.monotonic() >= deadline:
            raise busy
        time.sleep(poll_s)


def _try_lock(handle: IO[str]) -> bool:
    """Take an exclusive lock on the open file without blocking; False when another holds it."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        import msvcrt

        try:
            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _unlock(handle: IO[str]) -> None:
    """Release the lock taken by :func:`_try_lock`."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        import msvcrt

        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
        return
    fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
