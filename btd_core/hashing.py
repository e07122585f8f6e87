"""SHA-256 digests (lowercase hex), the one place btd computes them.

:func:`stream_sha256` is the core: an open binary file read :data:`HASH_CHUNK` bytes at
a time, with an optional check after each chunk (the study walk passes one that raises
:class:`~btd_core.study.file_access.Cancelled` when the user stops).
:func:`file_sha256` opens a path for it; :func:`bytes_sha256` digests bytes held in
memory (a zip member, a report file just written).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

HASH_CHUNK = 1 << 20
"""Bytes read per step when digesting a file (1 MiB)."""


def bytes_sha256(data: bytes) -> str:
    """SHA-256 (hex) of ``data``."""
    return hashlib.sha256(data).hexdigest()


def stream_sha256(fp: BinaryIO, after_chunk: Callable[[], None] | None = None) -> str:
    """SHA-256 (hex) of an open binary file from its current position to its end.

    ``after_chunk``, when given, is called after each :data:`HASH_CHUNK` bytes; whatever
    it raises stops the digest and propagates.
    """
    digest = hashlib.sha256()
    while chunk := fp.read(HASH_CHUNK):
        digest.update(chunk)
        if after_chunk is not None:
            after_chunk()
    return digest.hexdigest()


def file_sha256(path: Path | str) -> str:
    """SHA-256 (hex) of the file at ``path``; raises ``OSError`` when it cannot be read."""
    with open(path, "rb") as fp:
        return stream_sha256(fp)
