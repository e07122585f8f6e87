"""Archives in a study: ``.zip`` read in place, anything else recognised and refused.

A ``.zip`` study is read where it lies, read-only and without extracting anything to
disk: each member is read through :mod:`zipfile` into memory, after its claims are
checked against :class:`~btd_core.study.limits.StudyLimits` (member count, uncompressed
size, compression ratio), and refused when its name could escape a folder on extraction.
Other archives and compressed files (gzip, bzip2, xz, zstd, 7-Zip, RAR, tar) are
recognised by their first bytes and refused with "unpack it first".
"""

from __future__ import annotations

import os
import stat
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from btd_core.errors import BtdError
from btd_core.study.file_access import (
    READ_CHUNK,
    ClampedReader,
    StopCheck,
    check_stop,
    open_regular_file,
)
from btd_core.study.limits import StudyLimits

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
"""Local file header, empty archive (end record only), spanned archive marker."""

_COMPRESSED_MAGIC = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"7z\xbc\xaf\x27\x1c", "7-Zip"),
    (b"Rar!\x1a\x07", "RAR"),
    (b"LZIP", "lzip"),
    (b"\x1f\x9d", "compress (.Z)"),
)
ARCHIVE_HEAD_BYTES = 512
"""Bytes of a file's start that :func:`archive_kind` needs (tar's magic is at 257)."""

MEMBER_SEPARATOR = "!/"
"""``archive.zip!/dir/x.dcm``: how a member is named in reports."""

CENTRAL_DIRECTORY_BYTES_PER_MEMBER = 512
"""A zip's central directory may take at most this many bytes per allowed member on
average before it is parsed (it is read whole into memory)."""


def reason_unpack_first(kind: str) -> str:
    """The error row's reason for a compressed file or an archive other than a zip."""
    return f"compressed archive ({kind}): unpack it first"


REASON_NESTED = "archive inside an archive ({kind}): unpack it first"
REASON_ENCRYPTED = "encrypted archive member: cannot be read"
REASON_MEMBER_SYMLINK = "symlink inside the archive, not followed"


class ZipReadError(BtdError):
    """A zip or one of its members cannot be read; the message says why (plain words)."""


def archive_kind(head: bytes) -> str | None:
    """``"zip"``, the name of another archive or compression format, or ``None``.

    ``head``: the file's first :data:`ARCHIVE_HEAD_BYTES` bytes (fewer for a short file).
    """
    if head.startswith(ZIP_MAGIC):
        return "zip"
    for magic, name in _COMPRESSED_MAGIC:
        if head.startswith(magic):
            return name
    if head[257:262] == b"ustar":
        return "tar"
    return None


def unsafe_name_problem(name: str) -> str | None:
    """Why a member name is refused (it could leave a folder when extracted), or ``None``.

    Absolute names, drive letters, ``..`` / ``.`` / empty components (``\\`` counts as a
    separator, as Windows tools write it) and control characters are refused.
    """
    parts = name.replace("\\", "/").split("/")
    if parts and parts[-1] == "":  # a folder entry's trailing slash
        parts = parts[:-1]
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "refused: absolute member name (path traversal)"
    if any(p == ".." for p in parts):
        return "refused: member name with '..' (path traversal)"
    if not parts or any(p in ("", ".") for p in parts):
        return "refused: member name with an empty or '.' component"
    if any(not c.isprintable() for c in name):
        return "refused: member name with control characters"
    return None


@dataclass(frozen=True)
class ZipEntry:
    """One member of a zip as listed by its central directory (nothing read yet).

    ``problem``: why it is refused without being read, or ``None``; ``folder``: a
    folder entry (no row of its own).
    """

    info: zipfile.ZipInfo
    name: str
    problem: str | None
    folder: bool = False


def _precheck_directory(reader: ClampedReader, limits: StudyLimits) -> None:
    """Refuse a zip whose end record claims more members or a larger central directory
    than the limits allow, before :mod:`zipfile` parses it."""
    end_record = getattr(zipfile, "_EndRecData", None)
    if end_record is None:
        return
    try:
        record = end_record(reader)
    except Exception as exc:
        raise ZipReadError(f"not a valid zip archive: {exc}") from exc
    if not record:
        raise ZipReadError("not a valid zip archive: no end of central directory record")
    entries, directory_bytes = int(record[4]), int(record[5])
    if entries > limits.max_archive_members:
        raise ZipReadError(
            f"refused: the zip lists {entries} members, over the limit of "
            f"{limits.max_archive_members}"
        )
    if directory_bytes > limits.max_archive_members * CENTRAL_DIRECTORY_BYTES_PER_MEMBER:
        raise ZipReadError(
            f"refused: the zip's central directory claims {directory_bytes} bytes, over "
            f"{limits.max_archive_members * CENTRAL_DIRECTORY_BYTES_PER_MEMBER}"
        )


def open_zip(fp: BinaryIO, limits: StudyLimits) -> zipfile.ZipFile:
    """Open the zip in ``fp`` for reading, after checking its directory's claims.

    Raises :class:`ZipReadError`.
    """
    reader = ClampedReader(fp)
    _precheck_directory(reader, limits)
    try:
        archive = zipfile.ZipFile(reader, "r")  # type: ignore[arg-type]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, ValueError) as exc:
        raise ZipReadError(f"not a valid zip archive: {exc}") from exc
    except (OSError, EOFError, IndexError, KeyError) as exc:
        raise ZipReadError(f"not a valid zip archive: {exc}") from exc
    if len(archive.infolist()) > limits.max_archive_members:
        count = len(archive.infolist())
        archive.close()
        raise ZipReadError(
            f"refused: the zip lists {count} members, over the limit of "
            f"{limits.max_archive_members}"
        )
    return archive


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    """A member stored as a Unix symlink (``external_attr``'s high 16 bits)."""
    return info.create_system == 3 and stat.S_ISLNK(info.external_attr >> 16)


def member_problem(info: zipfile.ZipInfo, limits: StudyLimits) -> str | None:
    """Why a member is refused before reading it (its header's claims), or ``None``."""
    if info.flag_bits & 0x1:
        return REASON_ENCRYPTED
    if _is_symlink(info):
        return REASON_MEMBER_SYMLINK
    too_big = limits.member_bytes_problem(info.file_size)
    if too_big:
        return too_big
    if info.file_size > limits.max_compression_ratio * max(info.compress_size, 1):
        ratio = info.file_size // max(info.compress_size, 1)
        return (
            f"refused: {info.file_size} bytes compressed into {info.compress_size} "
            f"(ratio {ratio}:1, over {limits.max_compression_ratio}:1): a zip bomb?"
        )
    return None


def list_members(archive: zipfile.ZipFile, limits: StudyLimits) -> Iterator[ZipEntry]:
    """Every member in central-directory order, with its refusal if any.

    A name listed twice is refused both times (reading by name would give the last).
    """
    infos = archive.infolist()
    seen: dict[str, int] = {}
    for info in infos:
        seen[info.filename] = seen.get(info.filename, 0) + 1
    for info in infos:
        name = info.filename
        problem = unsafe_name_problem(name)
        if problem is None and seen[name] > 1:
            problem = "refused: the archive lists this member name more than once"
        if problem is None and info.is_dir():
            yield ZipEntry(info, name, None, folder=True)
            continue
        yield ZipEntry(info, name, problem or member_problem(info, limits))


def read_member(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    limits: StudyLimits,
    should_stop: StopCheck | None = None,
) -> bytes:
    """A member's content, read into memory 1 MiB at a time, at most its declared size
    (checked against ``limits`` first); its CRC-32 is checked at the end.

    Raises :class:`ZipReadError` (refused, shorter than declared, damaged, encrypted,
    unsupported compression) or :class:`~btd_core.study.file_access.Cancelled`.
    """
    problem = member_problem(info, limits)
    if problem:
        raise ZipReadError(problem)
    buffer = bytearray()
    try:
        with archive.open(info, "r") as member:
            while len(buffer) < info.file_size:
                chunk = member.read(min(READ_CHUNK, info.file_size - len(buffer)))
                if not chunk:
                    break
                buffer += chunk
                check_stop(should_stop)
            extra = member.read(1)  # at the end: zipfile checks the CRC-32
    except NotImplementedError as exc:
        raise ZipReadError(f"cannot be read: {exc}") from exc
    except RuntimeError as exc:  # encrypted
        raise ZipReadError(REASON_ENCRYPTED) from exc
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise ZipReadError(f"damaged archive member: {exc}") from exc
    except Exception as exc:  # zlib.error, lzma.LZMAError, ...
        raise ZipReadError(f"damaged archive member: {exc}") from exc
    if len(buffer) != info.file_size or extra:
        raise ZipReadError(
            f"damaged archive member: {len(buffer)} bytes read, {info.file_size} declared"
        )
    return bytes(buffer)


# --------------------------------------------------------------------------- reading slices

_cache = threading.local()


def read_member_of_file(zip_path: Path, name: str, limits: StudyLimits) -> bytes:
    """The content of member ``name`` of the zip file at ``zip_path`` (for reading slices).

    The last member read is kept per thread (key: path, name, size and modification
    time of the zip), so the frames of one multi-frame member are not inflated again
    for each frame.  Raises :class:`ZipReadError` or ``OSError``.
    """
    with open_regular_file(zip_path, nofollow=True) as fp:
        st = os.fstat(fp.fileno())
        key = (str(zip_path), name, st.st_size, st.st_mtime_ns, st.st_ino)
        cached = getattr(_cache, "member", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        _cache.member = None
        with open_zip(fp, limits) as archive:
            try:
                info = archive.getinfo(name)
            except KeyError as exc:
                raise ZipReadError(f"no member {name!r} in the archive any more") from exc
            data = read_member(archive, info, limits)
    _cache.member = (key, data)
    return data
