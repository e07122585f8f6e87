"""Find the slices under a study folder: DICOM, NIfTI, PNG/JPEG/TIFF images and ``.npy`` arrays.

:func:`discover` walks the folder (sorted, deterministic, read-only, symlinks to folders
never followed, symlinks to files followed only to a file inside the study), recognises
each file by its content, reads ``.zip`` studies in place (members read into memory,
nothing extracted), and returns a :class:`~btd_core.study.records.Discovery`: every file
as a :class:`~btd_core.study.records.FileRecord` (with a plain reason when it is skipped
or unreadable) and the slices grouped into ordered
:class:`~btd_core.study.records.Series`.  Pixels are not read here (see
:mod:`btd_core.study.pixels`); only headers are, and only small records are kept.

Every size a header claims is checked against :class:`~btd_core.study.limits.StudyLimits`
before anything of that size is allocated or one record per frame is made; a refusal is
an error row whose reason starts with ``refused:``.
"""

from __future__ import annotations

import io
import os
import re
import stat
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import BinaryIO

from PIL import Image, UnidentifiedImageError

from btd_core.hashing import bytes_sha256, stream_sha256
from btd_core.study.archives import (
    ARCHIVE_HEAD_BYTES,
    MEMBER_SEPARATOR,
    REASON_NESTED,
    ZipEntry,
    ZipReadError,
    archive_kind,
    list_members,
    open_zip,
    read_member,
    reason_unpack_first,
)
from btd_core.study.dicom_framing import has_dicm_prefix
from btd_core.study.dicom_header import DicomHeader, read_header
from btd_core.study.file_access import (
    IMAGE_FORMATS,
    REASON_NOT_REGULAR,
    Cancelled,
    NotRegularFileError,
    StopCheck,
    check_stop,
    npy_problem,
    open_regular_file,
    os_reason,
    read_npy_header,
    short_message,
    walk_entries,
)
from btd_core.study.limits import DEFAULT_LIMITS, LimitExceeded, StudyLimits
from btd_core.study.nifti import (
    GZIP_MAGIC,
    NiftiError,
    inflated_head,
    nifti_version,
    read_layout,
)
from btd_core.study.records import (
    Discovery,
    FileKind,
    FileRecord,
    FileStatus,
    Series,
    SeriesKind,
    SliceRef,
)

DICOM_SUFFIXES = frozenset({".dcm", ".dicom", ".ima"})
IMAGE_MAGIC = (
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",
    b"II*\x00",
    b"MM\x00*",
    b"II+\x00",
    b"MM\x00+",
)
NPY_MAGIC = b"\x93NUMPY"

REASON_DIR_SYMLINK = "symlink to a directory, not followed"
REASON_BROKEN_SYMLINK = "broken symlink"
REASON_LINK_OUTSIDE = "symlink to outside the study, not followed"
REASON_EMPTY = "empty file"
REASON_UNKNOWN = "not a DICOM, NIfTI, image or .npy file"
REASON_DICOMDIR = "DICOMDIR index (file-set directory): its images are read as files"
REASON_NO_PIXELS = "DICOM image without pixel data"
REASON_NO_SIZE = "DICOM image without Rows/Columns (0028,0010/0011)"
REASON_NO_SOP_CLASS = "not a valid DICOM file: no image and no usable SOP Class UID (0008,0016)"
REASON_CANCELLED = "not examined: discovery was cancelled"


def natural_key(name: str) -> tuple[object, ...]:
    """Sort key that puts ``slice2`` before ``slice10`` (ties broken by the exact name)."""
    parts = re.split(r"(\d+)", name)
    return (*((int(p) if i % 2 else p.lower()) for i, p in enumerate(parts)), name)


# --------------------------------------------------------------------------- examining files


@dataclass
class _Member:
    """One file's slices waiting to join a series (``group`` says which one)."""

    group: tuple[object, ...]
    base_key: str
    kind: SeriesKind
    rows: int
    columns: int
    description: str
    refs: list[SliceRef]
    header: DicomHeader | None = None
    relpath: str = ""


@dataclass
class _Found:
    """One examined file: its report row, and its slices if it has any."""

    record: FileRecord
    member: _Member | None = None
    more: list[_Member] = field(default_factory=list)
    """Further series of the same file (the other volumes of a 4-D NIfTI)."""

    @property
    def members(self) -> list[_Member]:
        return [] if self.member is None else [self.member, *self.more]


@dataclass
class _Walk:
    """What the examination of one study shares: its limits, the stop check, counters."""

    root_real: str
    limits: StudyLimits
    hash_files: bool
    should_stop: StopCheck | None
    slices: int = 0


@dataclass
class _Context:
    """What the examiners of one file (or one member of a zip) share.

    ``source``: the regular file to open when it is not ``path`` (a symlink's resolved
    target, or the zip holding ``member``); ``in_archive``: a member of a zip.
    """

    path: Path
    relpath: str
    size: int | None = None
    sha256: str | None = None
    source: Path | None = None
    member: str | None = None
    link_target: str = ""
    in_archive: bool = False
    reldir: str = field(init=False)

    def __post_init__(self) -> None:
        self.reldir = self.relpath.rpartition("/")[0] or "."

    def found(self, kind: FileKind, status: FileStatus, reason: str = "") -> _Found:
        record = FileRecord(
            self.path, self.relpath, self.size, self.sha256, kind, status, reason, self.link_target
        )
        return _Found(record)

    def pending(self, kind: FileKind, member: _Member) -> _Found:
        return _Found(self.found(kind, "pending").record, member)

    def ref(self, frame: int | None = None, **fields: object) -> SliceRef:
        """A slice of this file (its source and member carried along)."""
        return SliceRef(
            self.path,
            frame=frame,
            source=self.source,
            member=self.member,
            **fields,  # type: ignore[arg-type]
        )


def _examine_dicom(
    fp: BinaryIO, ctx: _Context, kind: FileKind, claims: bool, walk: _Walk
) -> _Found:
    """A file with the ``DICM`` prefix (``claims``), or any other file tried as bare DICOM."""
    try:
        h = read_header(fp, walk.limits, walk.should_stop)
    except LimitExceeded as exc:
        return ctx.found("dicom", "error", short_message(exc, limit=300))
    except (Cancelled, MemoryError):
        raise
    except Exception as exc:
        if claims:
            return ctx.found(kind, "error", f"not a valid DICOM file: {short_message(exc)}")
        return ctx.found("unknown", "skipped", REASON_UNKNOWN)
    if h.is_dicomdir:
        return ctx.found("dicomdir", "skipped", REASON_DICOMDIR)
    if not (h.is_image_class or h.rows or h.columns or h.has_pixel_data):
        if not h.sop_class_name:
            return ctx.found("dicom", "error", REASON_NO_SOP_CLASS)
        return ctx.found("dicom", "skipped", f"no pixel data ({h.sop_class_name})")
    if not h.has_pixel_data:
        return ctx.found("dicom", "error", REASON_NO_PIXELS)
    if not (h.rows and h.columns):
        return ctx.found("dicom", "error", REASON_NO_SIZE)
    refs = [
        ctx.ref(
            frame=i if h.number_of_frames > 1 else None,
            sop_instance_uid=h.sop_instance_uid,
            instance_number=h.instance_number,
            position=g.position,
            location=g.location,
            rescale_slope=g.rescale_slope,
            rescale_intercept=g.rescale_intercept,
            window=g.window,
            orientation=g.orientation,
        )
        for i, g in enumerate(h.frames)
    ]
    if h.series_uid:
        group: tuple[object, ...] = ("dicom", h.study_uid, h.series_uid, h.rows, h.columns)
        base = h.series_uid
    else:
        group, base = ("dicom-folder", ctx.reldir, h.rows, h.columns), f"dicom:{ctx.reldir}"
    member = _Member(group, base, "dicom", h.rows, h.columns, h.series_description, refs, h)
    return ctx.pending("dicom", member)


def _examine_image(fp: BinaryIO, ctx: _Context, walk: _Walk) -> _Found:
    """A PNG, JPEG or TIFF file: size and page count from its header (Pillow)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(fp, formats=IMAGE_FORMATS) as im:
                columns, rows = im.size
                pages = int(getattr(im, "n_frames", 1)) if im.format == "TIFF" else 1
    except UnidentifiedImageError:
        return ctx.found("image", "error", "not a valid image: Pillow cannot identify it")
    except MemoryError:
        raise
    except Exception as exc:
        return ctx.found("image", "error", f"not a valid image: {short_message(exc)}")
    if rows <= 0 or columns <= 0:
        return ctx.found("image", "error", f"not a valid image: size {columns}x{rows}")
    refused = walk.limits.frame_problem(rows, columns) or walk.limits.frames_problem(pages)
    if refused:
        return ctx.found("image", "error", refused)
    if pages > 1:
        refs = [ctx.ref(frame=i) for i in range(pages)]
        group: tuple[object, ...] = ("image-file", ctx.relpath)
        member = _Member(group, f"image:{ctx.relpath}", "image", rows, columns, ctx.path.name, refs)
    else:
        group = ("image", ctx.reldir, rows, columns)
        name = ctx.path.parent.name
        member = _Member(group, f"image:{ctx.reldir}", "image", rows, columns, name, [])
        member.refs.append(ctx.ref())
    return ctx.pending("image", member)


def _examine_npy(fp: BinaryIO, ctx: _Context, walk: _Walk) -> _Found:
    """A ``.npy`` file: a 2-D slice or a 3-D volume (frames along axis 0), header only."""
    try:
        shape, dtype, _, offset = read_npy_header(fp)
    except MemoryError:
        raise
    except Exception as exc:
        return ctx.found("npy", "error", f"not a valid .npy file: {short_message(exc)}")
    problem = npy_problem(shape, dtype, (ctx.size or 0) - offset, walk.limits)
    if problem:
        reason = problem if problem.startswith("refused:") else f"not a usable .npy file: {problem}"
        return ctx.found("npy", "error", reason)
    if len(shape) == 3:
        refs = [ctx.ref(frame=i) for i in range(shape[0])]
        group: tuple[object, ...] = ("npy-file", ctx.relpath)
        member = _Member(
            group, f"npy:{ctx.relpath}", "npy", shape[1], shape[2], ctx.path.name, refs
        )
    else:
        group = ("npy", ctx.reldir, shape[0], shape[1])
        name = ctx.path.parent.name
        member = _Member(group, f"npy:{ctx.reldir}", "npy", shape[0], shape[1], name, [])
        member.refs.append(ctx.ref())
    return ctx.pending("npy", member)


def _examine_nifti(fp: BinaryIO, ctx: _Context, compressed: bool, walk: _Walk) -> _Found:
    """A NIfTI-1/2 volume (``.nii``, or gzip: ``.nii.gz``): one series per 3-D volume,
    slices along the axis closest to superior-inferior (:mod:`btd_core.study.nifti`).

    The header's claims are checked against the limits first; a gzip stream is then
    inflated once, never past what the header claims, to check its length and CRC."""
    try:
        layout = read_layout(fp, compressed, walk.limits, walk.should_stop, check_stream=True)
    except NiftiError as exc:
        text = short_message(exc, limit=300)
        reason = (
            text
            if text.startswith(("refused:", "NIfTI header"))
            else f"not a usable NIfTI file: {text}"
        )
        return ctx.found("nifti", "error", reason)
    members = []
    for volume in range(layout.volumes):
        refs = []
        for index in range(layout.slices):
            position, location = layout.geometry(index)
            refs.append(
                ctx.ref(
                    frame=volume * layout.slices + index,
                    position=position,
                    location=location,
                    rescale_slope=layout.slope,
                    rescale_intercept=layout.intercept,
                    orientation=layout.orientation,
                )
            )
        if layout.affine is not None:
            refs.sort(key=lambda r: (r.location, r.frame))
        key = f"nifti:{ctx.relpath}"
        name = ctx.path.name
        if layout.volumes > 1:
            key, name = f"{key}:volume{volume + 1}", f"{name} volume {volume + 1}"
        group: tuple[object, ...] = ("nifti-file", ctx.relpath, volume)
        members.append(_Member(group, key, "nifti", layout.rows, layout.columns, name, refs))
    found = ctx.pending("nifti", members[0])
    found.more = members[1:]
    return found


def _examine_content(fp: BinaryIO, ctx: _Context, walk: _Walk) -> _Found:
    """Recognise an open, non-empty regular file (or zip member) by its first bytes."""
    fp.seek(0)
    head = fp.read(ARCHIVE_HEAD_BYTES)
    if has_dicm_prefix(head):
        return _examine_dicom(fp, ctx, "dicom", claims=True, walk=walk)
    if head.startswith(IMAGE_MAGIC):
        return _examine_image(fp, ctx, walk)
    if head.startswith(NPY_MAGIC):
        return _examine_npy(fp, ctx, walk)
    if nifti_version(head) is not None:
        return _examine_nifti(fp, ctx, compressed=False, walk=walk)
    if head.startswith(GZIP_MAGIC):
        try:
            inflated = inflated_head(fp)
        except NiftiError:
            inflated = b""
        if nifti_version(inflated) is not None:
            return _examine_nifti(fp, ctx, compressed=True, walk=walk)
        if Path(ctx.relpath).name.lower().endswith(".nii.gz"):
            return ctx.found(
                "nifti", "error", "not a usable NIfTI file: no NIfTI header in the gzip stream"
            )
    archive = archive_kind(head)
    if archive is not None:
        if ctx.in_archive:
            return ctx.found("archive", "error", REASON_NESTED.format(kind=archive))
        return ctx.found("archive", "error", reason_unpack_first(archive))
    claims = Path(ctx.relpath).suffix.lower() in DICOM_SUFFIXES
    return _examine_dicom(fp, ctx, "unknown", claims=claims, walk=walk)


def _guarded(ctx: _Context, examine: Callable[[], list[_Found]]) -> list[_Found]:
    """``examine()``; whatever goes wrong becomes an error row, never an exception
    (a cancellation goes through)."""
    try:
        return examine()
    except (KeyboardInterrupt, SystemExit, GeneratorExit, Cancelled):
        raise
    except BaseException as exc:  # includes a native library's pyo3 PanicException
        return [ctx.found("unknown", "error", f"could not be examined: {short_message(exc)}")]


def _examine_member(archive: object, entry: ZipEntry, ctx: _Context, walk: _Walk) -> _Found:
    """One member of a zip: read into memory (checked against the limits), hashed and
    recognised by content like a file."""
    try:
        data = read_member(archive, entry.info, walk.limits, walk.should_stop)  # type: ignore[arg-type]
    except ZipReadError as exc:
        return ctx.found("unknown", "error", short_message(exc, limit=300))
    ctx.size = len(data)
    ctx.sha256 = bytes_sha256(data) if walk.hash_files else None
    if not data:
        return ctx.found("unknown", "error", REASON_EMPTY)
    return _examine_content(io.BytesIO(data), ctx, walk)


def _examine_zip(fp: BinaryIO, ctx: _Context, walk: _Walk) -> list[_Found]:
    """A zip study, read in place: a row for the zip (its hash) and one per member
    (``archive.zip!/path/in/zip``, the member's own hash), folders left out."""
    source = ctx.source or ctx.path
    try:
        archive = open_zip(fp, walk.limits)
    except ZipReadError as exc:
        return [ctx.found("archive", "error", short_message(exc, limit=300))]
    rows: list[_Found] = []
    with archive:
        for entry in list_members(archive, walk.limits):
            if entry.folder:
                continue
            check_stop(walk.should_stop)
            name = f"{MEMBER_SEPARATOR}{entry.name}"
            member = _Context(
                Path(f"{ctx.path}{name}"),
                f"{ctx.relpath}{name}",
                size=entry.info.file_size,
                source=source,
                member=entry.name,
                in_archive=True,
            )
            if entry.problem:
                rows.append(member.found("unknown", "error", entry.problem))
                continue
            rows.extend(
                _guarded(
                    member,
                    lambda m=member, e=entry: [_examine_member(archive, e, m, walk)],  # type: ignore[misc]
                )
            )
    count = len(rows)
    plural = "s" if count != 1 else ""
    reason = f"zip archive, read in place: {count} member{plural} (rows {ctx.relpath}!/...)"
    return [ctx.found("archive", "skipped", reason), *rows]


def _shown_target(target: str, root_real: str) -> str:
    """A symlink's resolved target as files.csv shows it: relative to the study when
    inside it, else absolute."""
    if target.startswith(root_real + os.sep):
        return Path(os.path.relpath(target, root_real)).as_posix()
    return target


def _examine_file(ctx: _Context, walk: _Walk) -> list[_Found]:
    """Check what the path is (``lstat``/``stat``) before opening it, then examine it.

    A symlink to a file is followed only when its resolved target lies inside the study;
    the file opened is then that target (opened without following a link again).
    """
    try:
        st = os.lstat(ctx.path)
        if stat.S_ISLNK(st.st_mode):
            ctx.link_target = os.readlink(ctx.path)
            try:
                st = os.stat(ctx.path)
            except FileNotFoundError:
                return [ctx.found("unknown", "error", REASON_BROKEN_SYMLINK)]
            target = os.path.realpath(ctx.path)
            ctx.link_target = _shown_target(target, walk.root_real)
            if stat.S_ISDIR(st.st_mode):
                return [ctx.found("unknown", "skipped", REASON_DIR_SYMLINK)]
            if not target.startswith(walk.root_real + os.sep):
                return [ctx.found("unknown", "error", REASON_LINK_OUTSIDE)]
            ctx.source = Path(target)
        if not stat.S_ISREG(st.st_mode):
            return [ctx.found("unknown", "skipped", REASON_NOT_REGULAR)]
        fp = open_regular_file(ctx.source or ctx.path, nofollow=ctx.source is not None)
    except NotRegularFileError:
        return [ctx.found("unknown", "skipped", REASON_NOT_REGULAR)]
    except OSError as exc:
        return [ctx.found("unknown", "error", os_reason(exc))]
    with fp:
        try:
            ctx.size = os.fstat(fp.fileno()).st_size
            stop_check = partial(check_stop, walk.should_stop)
            ctx.sha256 = stream_sha256(fp, stop_check) if walk.hash_files else None
        except OSError as exc:
            return [ctx.found("unknown", "error", os_reason(exc))]
        if ctx.size == 0:
            return [ctx.found("unknown", "error", REASON_EMPTY)]
        fp.seek(0)
        head = fp.read(ARCHIVE_HEAD_BYTES)
        if not has_dicm_prefix(head) and archive_kind(head) == "zip":
            return _examine_zip(fp, ctx, walk)
        return [_examine_content(fp, ctx, walk)]


def _within_slice_limit(item: _Found, walk: _Walk) -> _Found:
    """The item, or its error row when its slices would take the study over the limit."""
    if item.member is None:
        return item
    count = sum(len(m.refs) for m in item.members)
    problem = walk.limits.slices_problem(walk.slices, count)
    if problem:
        return _Found(replace(item.record, status="error", reason=problem))
    walk.slices += count
    return item


# --------------------------------------------------------------------------- series


def _unique(key: str, used: set[str]) -> str:
    """``key``, or ``key#2``, ``key#3``... when already used."""
    candidate, n = key, 1
    while candidate in used:
        n += 1
        candidate = f"{key}#{n}"
    used.add(candidate)
    return candidate


def _order_dicom(entries: list[tuple[SliceRef, str]]) -> tuple[list[SliceRef], str]:
    """Order DICOM slices: by slice normal, else (one multi-frame file) by frame, else by
    (0020,0013) Instance Number, else by file name; ties by Instance Number then name."""

    def tie(ref: SliceRef, rel: str) -> tuple[object, ...]:
        number = ref.instance_number
        return (number is None, number or 0, natural_key(rel), ref.frame or 0)

    refs = [ref for ref, _ in entries]
    key: Callable[[tuple[SliceRef, str]], tuple[object, ...]]
    if all(ref.location is not None for ref in refs):
        ordering, key = "slice normal", lambda e: (e[0].location, *tie(*e))
    elif len({ref.path for ref in refs}) == 1 and refs[0].frame is not None:
        ordering, key = "frame", lambda e: (e[0].frame,)
    elif all(ref.instance_number is not None for ref in refs):
        ordering, key = "instance number", lambda e: tie(*e)
    else:
        ordering, key = "file name", lambda e: (natural_key(e[1]), e[0].frame or 0)
    return [ref for ref, _ in sorted(entries, key=key)], ordering


def _make_series(key: str, members: list[_Member], limits: StudyLimits) -> Series:
    """One series from the members of a group (first member gives the series fields)."""
    first = members[0]
    series = Series(key=key, kind=first.kind, rows=first.rows, columns=first.columns, limits=limits)
    entries = [(ref, m.relpath) for m in members for ref in m.refs]
    if first.header is not None:
        h = first.header
        series.study_uid, series.series_uid = h.study_uid, h.series_uid
        series.modality, series.description = h.modality, h.series_description
        series.patient_id, series.patient_name = h.patient_id, h.patient_name
        series.study_date = h.study_date
        series.slices, series.ordering = _order_dicom(entries)
    elif first.kind == "nifti":
        located = all(ref.location is not None for ref in first.refs)
        series.description = first.description
        series.ordering = "slice normal" if located else "frame"
        series.slices = list(first.refs)
    elif len(members) == 1 and first.refs[0].frame is not None:
        series.description, series.ordering = first.description, "frame"
        series.slices = list(first.refs)
    else:
        series.description, series.ordering = first.description, "file name"
        series.slices = [ref for ref, _ in sorted(entries, key=lambda e: natural_key(e[1]))]
    return series


def _build_series(found: list[_Found], limits: StudyLimits) -> list[Series]:
    """Group members by identity (order of first appearance) and make unique keys."""
    groups: dict[tuple[object, ...], list[_Member]] = {}
    for item in found:
        for member in item.members:
            member.relpath = item.record.relpath
            groups.setdefault(member.group, []).append(member)
    used: set[str] = set()
    return [_make_series(_unique(ms[0].base_key, used), ms, limits) for ms in groups.values()]


def _listed_entries(root: Path, files: Sequence[str]) -> Iterator[tuple[Path, str, str | None]]:
    """``(path, relpath, error)`` for each listed entry (sorted, each once); a path that
    could leave ``root`` is an error entry."""
    for relpath in sorted(set(files)):
        parts = relpath.split("/")
        if not relpath or relpath.startswith("/") or any(p in ("", ".", "..") for p in parts):
            yield root, relpath, "not a path inside the study: not opened"
            continue
        yield root.joinpath(*parts), relpath, None


def discover(
    root: Path,
    hash_files: bool = True,
    *,
    limits: StudyLimits | None = None,
    should_stop: StopCheck | None = None,
    files: Sequence[str] | None = None,
) -> Discovery:
    """Walk a study folder and group what it holds into ordered series (read-only).

    Parameters
    ----------
    root:
        The study folder (a symlink to a folder is accepted for the root itself).
    hash_files:
        Compute each file's SHA-256 (streamed, 1 MiB at a time); ``False`` leaves
        :attr:`FileRecord.sha256` ``None``.
    limits:
        What headers may claim (:class:`~btd_core.study.limits.StudyLimits`); default:
        :data:`~btd_core.study.limits.DEFAULT_LIMITS`.
    should_stop:
        Asked before each file, each zip member, each MiB hashed and every 64 frames of
        a multi-frame header; when it returns true the walk ends within that step and
        what was found so far is returned with ``cancelled`` set (the file being
        examined is listed as skipped, :data:`REASON_CANCELLED`).
    files:
        Only these entries of ``root`` (paths relative to it, ``/`` separators), instead
        of walking the whole folder: a study whose files share a folder with other
        studies' (``btd archive`` groups DICOM by Study Instance UID across folders).
        ``None`` (default): every entry under ``root``.  A path that is absolute or
        steps out of ``root`` (``..``) is an error row, never opened.

    Returns
    -------
    Discovery
        ``files``: every entry met, sorted by relative path, ``pending`` when part of
        a series, else ``skipped``/``error`` with a reason; ``series``, in order of
        first appearance: DICOM grouped by (0020,000D) Study and (0020,000E) Series
        Instance UID and keyed by the latter (``dicom:<folder>`` when the Series UID is
        missing), image and ``.npy`` series keyed by folder or file, a NIfTI volume by
        its file (``nifti:<relpath>``, one series per volume of a 4-D file); a group whose
        slices differ in size is split (``#2``, ...).  Slices are in anatomical order
        (see :attr:`Series.ordering`).

    Raises
    ------
    NotADirectoryError
        ``root`` is not a folder.
    """
    root = Path(os.path.abspath(root))
    if not root.is_dir():
        raise NotADirectoryError(f"study folder not found or not a folder: {root}")
    limits = limits or DEFAULT_LIMITS
    walk = _Walk(os.path.realpath(root), limits, hash_files, should_stop)
    found: list[_Found] = []
    cancelled = False
    entries = walk_entries(root) if files is None else _listed_entries(root, files)
    for path, relpath, error in entries:
        if should_stop is not None and should_stop():
            cancelled = True
            break
        ctx = _Context(path, relpath)
        if error:
            found.append(ctx.found("unknown", "error", error))
            continue
        try:
            items = _guarded(ctx, lambda c=ctx: _examine_file(c, walk))  # type: ignore[misc]
        except Cancelled:
            cancelled = True
            found.append(_Context(path, relpath).found("unknown", "skipped", REASON_CANCELLED))
            break
        found.extend(_within_slice_limit(item, walk) for item in items)
    found.sort(key=lambda item: item.record.relpath)
    return Discovery(
        root=root,
        series=_build_series(found, limits),
        files=[f.record for f in found],
        cancelled=cancelled,
        limits=limits,
    )
