"""Finding the studies under an archive root and planning one unit of work per study.

The root is walked once (sorted, read-only, folder symlinks never followed:
:func:`btd_core.study.file_access.walk_entries`).  Two layouts are recognised, together:

- **Folder per study**: every folder ``depth`` levels below the root (default 1: each
  child folder of the root) is a study; a unit made of such a folder is scanned exactly
  as ``btd scan FOLDER`` would (the whole folder, relative paths from it).
- **DICOM by Study Instance UID**: the (0020,000D) Study Instance UID of every DICOM file
  (a file with the ``DICM`` prefix or a DICOM suffix; header only) is read.  When a
  study folder holds exactly one UID and that UID lies in no other folder, the folder is
  the unit (as above).  Otherwise each UID found there becomes a unit of its own: its
  files from every folder, rooted at their nearest common folder, and the folder's other
  files (not DICOM, unreadable, without a UID) stay a unit of their own, so every file is
  accounted for once.

Files above the study level (e.g. directly in the root) form units of their folder with
only those files listed.

**Input hash** (:func:`fingerprint`): the SHA-256 of the sorted ``(relative path, size,
mtime in ns, file type)`` of the unit's entries, taken with ``lstat``: cheap (no file
is read) and exact enough to notice any file added, removed, rewritten or touched (a
file changed in place without changing size and mtime is not seen; each scan's
``files.csv`` still records every file's SHA-256).  UIDs are cached by (path, size,
mtime) in the manifest, so a rerun reads no header of an unchanged file.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from btd_core.hashing import bytes_sha256
from btd_core.study.dicom_framing import has_dicm_prefix
from btd_core.study.dicom_header import read_header
from btd_core.study.discovery import DICOM_SUFFIXES
from btd_core.study.file_access import walk_entries
from btd_core.study.limits import DEFAULT_LIMITS, StudyLimits

UnitKind = str
"""``"folder"`` (a study folder, or the files of a folder not claimed by a UID unit) or
``"study_uid"`` (the DICOM files of one Study Instance UID, from any folders)."""

FOLDER_NAME_CHARS = 48
"""At most this many characters of a study's name go into its report folder's name."""


@dataclass(frozen=True)
class FileStamp:
    """What is known of one file without reading it: ``lstat``'s size (bytes), mtime (ns)
    and type (``f`` regular, ``l`` symlink, ``o`` other, ``e`` the folder could not be
    listed), and the Study Instance UID when it is DICOM (``""`` otherwise)."""

    size: int
    mtime_ns: int
    kind: str
    study_uid: str = ""


@dataclass(frozen=True)
class Unit:
    """One unit of work: a study.

    Attributes
    ----------
    key:
        Unique and stable across runs: ``folder:<path relative to the root>`` (``.`` for
        the root) or ``study:<Study Instance UID>``.  Raw text: make it printable to show.
    kind:
        See :data:`UnitKind`.
    root:
        The folder the study is scanned from, relative to the archive root (``.``: the
        root itself), ``/`` separators.
    files:
        The entries to scan, relative to ``root``; ``None``: the whole folder (exactly
        what ``btd scan ROOT/root`` reads).
    entries:
        Every entry of the unit, relative to the archive root, with its stamp.
    label:
        A short human name: the folder, or the folder and the UID.
    """

    key: str
    kind: UnitKind
    root: str
    files: tuple[str, ...] | None
    entries: Mapping[str, FileStamp] = field(repr=False)
    label: str = ""

    @property
    def fingerprint(self) -> str:
        """The unit's input hash (:func:`fingerprint`)."""
        return fingerprint(self.entries)

    @property
    def folder_name(self) -> str:
        """The report folder's name under ``OUT/studies`` (:func:`folder_name`)."""
        return folder_name(self.key)


@dataclass
class Plan:
    """The units found under one root, in key order, and the UID cache to store back."""

    root: Path
    depth: int
    units: list[Unit]
    stamps: dict[str, FileStamp]


def fingerprint(entries: Mapping[str, FileStamp]) -> str:
    """SHA-256 (hex) of the sorted ``relpath, size, mtime_ns, type`` lines of ``entries``."""
    digest = hashlib.sha256()
    for relpath in sorted(entries):
        stamp = entries[relpath]
        line = f"{relpath}\0{stamp.size}\0{stamp.mtime_ns}\0{stamp.kind}\n"
        digest.update(line.encode("utf-8", errors="surrogateescape"))
    return digest.hexdigest()


def folder_name(key: str) -> str:
    """A safe, unique report folder name for the unit ``key``: its letters, digits, ``.``,
    ``_`` and ``-`` (others as ``_``, at most :data:`FOLDER_NAME_CHARS`, never starting
    with ``.`` or ``-``), then ``-`` and 10 hex digits of the key's SHA-256."""
    name = key.partition(":")[2] or key
    slug = re.sub(r"[^A-Za-z0-9._-]", "_", name)[:FOLDER_NAME_CHARS].lstrip(".-") or "root"
    token = bytes_sha256(key.encode("utf-8", errors="surrogateescape"))[:10]
    return f"{slug}-{token}"


def _stamp(path: Path, error: str | None) -> FileStamp:
    if error:
        return FileStamp(0, 0, "e")
    try:
        info = os.lstat(path)
    except OSError:
        return FileStamp(0, 0, "e")
    mode = info.st_mode
    kind = "f" if stat.S_ISREG(mode) else "l" if stat.S_ISLNK(mode) else "o"
    return FileStamp(info.st_size, info.st_mtime_ns, kind)


def read_study_uid(path: Path, limits: StudyLimits = DEFAULT_LIMITS) -> str:
    """The Study Instance UID of a DICOM file (header only), or ``""`` when the file is
    not DICOM, cannot be read or has none.  Never raises for a bad file."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(132)
            if not (has_dicm_prefix(head) or path.suffix.lower() in DICOM_SUFFIXES):
                return ""
            handle.seek(0)
            return str(read_header(handle, limits).study_uid or "")
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException:
        return ""


def plan_archive(
    root: Path,
    depth: int = 1,
    cache: Mapping[str, FileStamp] | None = None,
    limits: StudyLimits = DEFAULT_LIMITS,
) -> Plan:
    """Find the studies under ``root`` and plan one :class:`Unit` per study (read-only).

    ``depth`` (>= 1): how many folder levels below ``root`` a study folder lies.
    ``cache``: stamps of an earlier plan (relpath -> :class:`FileStamp`); a regular
    file with the same size and mtime keeps its UID without being read again.
    """
    if depth < 1:
        raise ValueError("depth must be at least 1")
    root = Path(os.path.abspath(root))
    cache = cache or {}
    stamps: dict[str, FileStamp] = {}
    errors: dict[str, str] = {}
    for path, relpath, error in walk_entries(root):
        stamp = _stamp(path, error)
        if error:
            errors[relpath] = error
        elif stamp.kind == "f":
            known = cache.get(relpath)
            if known is not None and (known.size, known.mtime_ns) == (stamp.size, stamp.mtime_ns):
                uid = known.study_uid
            else:
                uid = read_study_uid(path, limits)
            stamp = FileStamp(stamp.size, stamp.mtime_ns, "f", uid)
        stamps[relpath] = stamp
    units = _group(stamps, depth)
    return Plan(root, depth, sorted(units, key=lambda u: u.key), stamps)


def _study_folder(relpath: str, depth: int) -> tuple[str, bool]:
    """The study folder of an entry (relative, ``.`` for the root) and whether the entry
    lies at or below the study level (else it sits in a shallower folder)."""
    parts = PurePosixPath(relpath).parts[:-1]
    if len(parts) >= depth:
        return "/".join(parts[:depth]), True
    return "/".join(parts) or ".", False


def _common_folder(relpaths: list[str]) -> str:
    """The nearest folder holding all ``relpaths`` (``.`` for the root)."""
    folders = [PurePosixPath(r).parts[:-1] for r in relpaths]
    common = list(folders[0])
    for parts in folders[1:]:
        n = 0
        while n < min(len(common), len(parts)) and common[n] == parts[n]:
            n += 1
        del common[n:]
    return "/".join(common) or "."


def _under(folder: str, relpath: str) -> str:
    return relpath if folder == "." else relpath[len(folder) + 1 :]


def _group(stamps: dict[str, FileStamp], depth: int) -> list[Unit]:
    folders: dict[tuple[str, bool], list[str]] = {}
    for relpath in stamps:
        folders.setdefault(_study_folder(relpath, depth), []).append(relpath)
    uid_folders: dict[str, set[tuple[str, bool]]] = {}
    for place, relpaths in folders.items():
        for relpath in relpaths:
            uid = stamps[relpath].study_uid
            if uid:
                uid_folders.setdefault(uid, set()).add(place)
    units: list[Unit] = []
    by_uid: dict[str, list[str]] = {}
    for place, relpaths in folders.items():
        folder, whole = place
        uids = {stamps[r].study_uid for r in relpaths if stamps[r].study_uid}
        if whole and len(uids) <= 1 and all(len(uid_folders[u]) == 1 for u in uids):
            entries = {r: stamps[r] for r in relpaths}
            units.append(Unit(f"folder:{folder}", "folder", folder, None, entries, folder))
            continue
        rest = [r for r in relpaths if not stamps[r].study_uid]
        for relpath in relpaths:
            if stamps[relpath].study_uid:
                by_uid.setdefault(stamps[relpath].study_uid, []).append(relpath)
        if rest:
            files = tuple(_under(folder, r) for r in sorted(rest))
            entries = {r: stamps[r] for r in rest}
            label = f"{folder} (other files)" if uids else folder
            units.append(Unit(f"folder:{folder}", "folder", folder, files, entries, label))
    for uid, relpaths in by_uid.items():
        common = _common_folder(relpaths)
        files = tuple(_under(common, r) for r in sorted(relpaths))
        entries = {r: stamps[r] for r in relpaths}
        units.append(Unit(f"study:{uid}", "study_uid", common, files, entries, f"{common} ({uid})"))
    return units
