"""Hostile-input fuzz run: mutated real DICOM, ``.npy`` and image files through discovery,
pixel reading, windowing and tiling, each case in a fresh study folder, in child processes
under a memory cap and a per-case time limit.

Sources are the DICOM files bundled with pydicom and pydicom-data (under 300 KB each);
mutations: header fields (Rows, Columns, Number of Frames, Bits Allocated, Samples per
Pixel, Photometric Interpretation, transfer syntax, rescale, geometry, deleted elements),
value length fields and item lengths overwritten, truncation, byte flips, inserts and
deletions; ``.npy`` headers with hostile shapes (2^62, negative, zero, huge, too many
dimensions) and dtypes, with too little or too much data; PNG/TIFF with mutated sizes;
NIfTI-1 volumes with hostile header fields (dims, data type, voxel offset, scaling, affine,
magic), truncated, padded or gzipped with far more data than claimed;
some cases wrapped in a zip or a gzip, or reached through a symlink inside or outside the
study.  No model is needed: each slice goes through
:func:`btd_core.study.discovery.discover`, :func:`btd_core.study.pixels.read_slice`,
:func:`btd_core.slices.windowing.to_model_range` and the tiling of
:mod:`btd_core.slices.tiling`.

Counted: escaped exceptions (anything that is not an error row or a ``SliceReadError``),
rows without a reason, hangs (a case over ``--timeout``), kills (a child that died: the
memory cap, a signal, a native crash), changes to the input tree (fingerprint before and
after), and MemoryErrors turned into error rows.  Exit status 1 when any of the first
five is not 0.

    python benchmarks/fuzz_inputs.py --count 10000 --seed 0     # the issue's run
    python benchmarks/fuzz_inputs.py --count 200 --seed 1       # a few seconds
    python benchmarks/fuzz_inputs.py --case 1234 --seed 0       # one case, in this process
"""

from __future__ import annotations

import argparse
import gzip
import importlib
import io
import json
import multiprocessing as mp
import os
import random
import resource
import shutil
import struct
import sys
import tempfile
import time
import traceback
import warnings
import zipfile
import zlib
from collections import Counter
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pydicom
import pydicom.data
from PIL import Image

from tests.study_builder import tree_fingerprint

MAX_SOURCE_BYTES = 300_000
SLICES_PER_CASE = 3
"""Slices read per case: the first, the middle and the last of each series."""
RUNTIME_MODULES = (
    "btd_core.slices.tiling",
    "btd_core.slices.windowing",
    "btd_core.study.discovery",
    "btd_core.study.pixels",
)
FULL_TILES_BYTES = 256 << 20
"""The whole tile grid is also extracted (as the scan does) when it takes at most this."""


# --------------------------------------------------------------------------- sources


def source_files() -> list[Path]:
    """pydicom's and pydicom-data's bundled DICOM files under 300 KB, sorted by name."""
    folders = [Path(pydicom.data.__file__).parent / "test_files"]
    try:
        import data_store  # pydicom-data

        folders.append(Path(data_store.__file__).parent / "data")
    except ImportError:
        pass
    files = {
        path
        for folder in folders
        for path in folder.rglob("*.dcm")
        if path.is_file() and path.stat().st_size <= MAX_SOURCE_BYTES
    }
    return sorted(files, key=lambda p: (p.name, str(p)))


_SOURCES: list[tuple[str, bytes]] = []


def sources() -> list[tuple[str, bytes]]:
    if not _SOURCES:
        _SOURCES.extend((p.name, p.read_bytes()) for p in source_files())
    return _SOURCES


# --------------------------------------------------------------------------- mutations

_US_VALUES = [0, 1, 2, 3, 7, 64, 255, 4096, 16384, 16385, 20000, 40000, 65535]
_FIELDS: dict[str, list[object]] = {
    "Rows": _US_VALUES,
    "Columns": _US_VALUES,
    "NumberOfFrames": [
        "0",
        "-1",
        "1",
        "2",
        "3",
        "9",
        "11",
        "10000",
        "10001",
        "2147483647",
        "99999999999",
        "abc",
        "",
        "1.5",
    ],
    "BitsAllocated": [0, 1, 7, 8, 12, 16, 24, 32, 48, 64, 65535],
    "BitsStored": [0, 1, 8, 12, 16, 33, 65535],
    "HighBit": [0, 7, 11, 15, 64, 65535],
    "SamplesPerPixel": [0, 1, 2, 3, 4, 65535],
    "PixelRepresentation": [0, 1, 2],
    "PlanarConfiguration": [0, 1, 7],
    "PhotometricInterpretation": [
        "MONOCHROME1",
        "MONOCHROME2",
        "RGB",
        "YBR_FULL_422",
        "PALETTE COLOR",
        "",
        "XYZ",
    ],
    "RescaleSlope": ["nan", "inf", "-inf", "1e308", "0", "abc", "-1"],
    "RescaleIntercept": ["nan", "1e308", "-1e308", "abc"],
    "WindowCenter": ["nan", "1e308", "abc", "-5"],
    "WindowWidth": ["0", "-1", "nan", "1e308"],
    "ImagePositionPatient": [["nan", "0", "0"], ["1e308", "1e308", "1e308"], ["1"]],
    "ImageOrientationPatient": [["0"] * 6, ["nan"] * 6, ["1", "0", "0", "1", "0", "0"]],
}
_SYNTAXES = [
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2.2",
    "1.2.840.10008.1.2.1.99",
    "1.2.840.10008.1.2.5",
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.80",
    "1.2.840.10008.1.2.4.90",
    "1.2.3.4",
    "",
]
_DELETABLE = [
    "Rows",
    "Columns",
    "PixelData",
    "BitsAllocated",
    "NumberOfFrames",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "PerFrameFunctionalGroupsSequence",
    "SharedFunctionalGroupsSequence",
]


def _set_field(ds: pydicom.Dataset, rng: random.Random) -> None:
    """One hostile header edit on a parsed data set."""
    what = rng.random()
    if what < 0.65:
        keyword = rng.choice(sorted(_FIELDS))
        value = rng.choice(_FIELDS[keyword])
        if rng.random() < 0.1 and isinstance(value, int):
            value = rng.randrange(65536)
        if keyword in ("Rows", "Columns") and rng.random() < 0.3:  # both sides at once
            ds.Rows = ds.Columns = value
        else:
            setattr(ds, keyword, value)
    elif what < 0.8:
        ds.file_meta = getattr(ds, "file_meta", None) or pydicom.dataset.FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = rng.choice(_SYNTAXES)
    elif what < 0.92:
        keyword = rng.choice(_DELETABLE)
        if keyword in ds:
            delattr(ds, keyword)
    elif "PixelData" in ds:
        value = ds.PixelData
        ds.PixelData = value[: rng.randrange(len(value) + 1)] if value else b"\x00" * 7


def mutate_fields(data: bytes, rng: random.Random) -> bytes:
    """Header fields changed through pydicom (validation off), written back."""
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
        for _ in range(rng.choice((1, 1, 2, 3))):
            _set_field(ds, rng)
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=False)
        return out.getvalue()
    except Exception:
        return mutate_bytes(data, rng)


_LONG_VRS = (b"OB", b"OW", b"OF", b"SQ", b"UN", b"UT", b"OD", b"OL")
_SHORT_VRS = (b"US", b"IS", b"DS", b"UI", b"CS", b"LO", b"SH", b"UL", b"FD", b"FL")
_HUGE = [0xFFFFFFFF, 0xFFFFFFF0, 0x7FFFFFFF, 0x10000000, 0, 1, 2, 3]


def mutate_lengths(data: bytes, rng: random.Random) -> bytes:
    """A value length or item length overwritten with a hostile number."""
    buf = bytearray(data)
    spots: list[tuple[int, int]] = []
    for vr in _LONG_VRS:
        at = buf.find(vr + b"\x00\x00")
        while at != -1 and len(spots) < 400:
            spots.append((at + 4, 4))
            at = buf.find(vr + b"\x00\x00", at + 1)
    for vr in _SHORT_VRS:
        at = buf.find(vr)
        while at != -1 and len(spots) < 800:
            spots.append((at + 2, 2))
            at = buf.find(vr, at + 1)
    at = buf.find(b"\xfe\xff\x00\xe0")
    while at != -1 and len(spots) < 1200:
        spots.append((at + 4, 4))
        at = buf.find(b"\xfe\xff\x00\xe0", at + 1)
    if not spots:
        return mutate_bytes(data, rng)
    for _ in range(rng.choice((1, 1, 2))):
        where, width = rng.choice(spots)
        value = rng.choice([*_HUGE, len(data) * 2, rng.randrange(1 << 32)])
        buf[where : where + width] = (value & ((1 << (8 * width)) - 1)).to_bytes(width, "little")
    return bytes(buf)


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    """Flips, inserts, deletions, overwrites and truncation (mostly in the first 2 KB)."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if not buf:
            break
        limit = min(len(buf), 2048) if rng.random() < 0.7 else len(buf)
        at = rng.randrange(limit)
        op = rng.choice(("flip", "insert", "delete", "truncate", "overwrite"))
        payload = rng.randbytes(rng.randint(1, 16))
        if op == "flip":
            buf[at] ^= payload[0] or 0xFF
        elif op == "insert":
            buf[at:at] = payload
        elif op == "delete":
            del buf[at : at + len(payload)]
        elif op == "truncate":
            del buf[at:]
        else:
            buf[at : at + len(payload)] = payload
    return bytes(buf)


def dicom_case(rng: random.Random) -> tuple[str, bytes]:
    name, data = rng.choice(sources())
    kind = rng.random()
    if kind < 0.45:
        data = mutate_fields(data, rng)
    elif kind < 0.6:
        data = mutate_lengths(data, rng)
    elif kind < 0.75:
        data = mutate_fields(mutate_bytes(data, rng), rng)
    else:
        data = mutate_bytes(data, rng)
    return rng.choice((name, "m.dcm", "m", "m.bin")), data


_DIMS = [0, 1, 2, 3, 4, 64, 65535, 65536, 2**31, 2**32, 2**62, 2**63 - 1, -1, 10**30]
_DTYPES = ["<f4", "<f8", "<i2", "|u1", ">f8", "<f2", "<c8", "|O", "<U4", "|V8", "|b1"]


def npy_case(rng: random.Random) -> tuple[str, bytes]:
    """A ``.npy`` with a hostile header (or a valid one, byte-mutated)."""
    if rng.random() < 0.3:
        array = np.random.default_rng(rng.randrange(1 << 30)).normal(size=(3, 20, 16))
        out = io.BytesIO()
        np.save(out, array.astype(rng.choice(("<f4", "<i2", ">f8"))))
        return "v.npy", mutate_bytes(out.getvalue(), rng)
    ndim = rng.choice((1, 2, 2, 3, 3, 3, 4, 0))
    shape = tuple(
        rng.choice(_DIMS) if rng.random() < 0.35 else rng.randrange(1, 70) for _ in range(ndim)
    )
    descr: object = rng.choice(_DTYPES)
    if rng.random() < 0.05:
        descr = [("a", "<f4"), ("b", "<i2")]
    header = io.BytesIO()
    try:
        np.lib.format.write_array_header_1_0(
            header, {"descr": descr, "fortran_order": rng.random() < 0.2, "shape": shape}
        )
    except Exception:
        header = io.BytesIO(b"\x93NUMPY\x01\x00" + rng.randbytes(30))
    try:
        expected = abs(int(np.prod([min(abs(d), 10**6) for d in shape], dtype=object))) * 4
    except Exception:
        expected = 0
    choices = [0, 8, rng.randrange(1, 65536)]
    if 0 < expected <= 4 << 20:
        choices += [expected, expected - 1, expected * 2]
    body = (
        rng.randbytes(rng.choice(choices)) if rng.random() < 0.5 else b"\x00" * rng.choice(choices)
    )
    return rng.choice(("s.npy", "v.npy", "x")), header.getvalue() + body


def _png_with_size(width: int, height: int, rng: random.Random) -> bytes:
    out = io.BytesIO()
    pixels = np.random.default_rng(rng.randrange(1 << 30)).integers(0, 255, (12, 10), np.uint8)
    Image.fromarray(pixels).save(out, format="PNG")
    data = bytearray(out.getvalue())
    data[16:24] = struct.pack(">II", width & 0xFFFFFFFF, height & 0xFFFFFFFF)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    return bytes(data)


def image_case(rng: random.Random) -> tuple[str, bytes]:
    """PNG with a hostile IHDR size (CRC fixed), or a mutated PNG/TIFF."""
    if rng.random() < 0.5:
        size = rng.choice([0, 1, 10, 20000, 65536, 100000, 2**31 - 1, 2**32 - 1])
        other = rng.choice([1, 12, size])
        return "p.png", _png_with_size(size, other, rng)
    out = io.BytesIO()
    pixels = np.random.default_rng(rng.randrange(1 << 30)).integers(0, 60000, (16, 12))
    fmt = rng.choice(("PNG", "TIFF"))
    Image.fromarray(pixels.astype(np.uint16 if fmt == "PNG" else np.int32)).save(out, format=fmt)
    return f"i.{fmt.lower()}", mutate_bytes(out.getvalue(), rng)


_NIFTI_FIELDS = {  # NIfTI-1 header: offset, struct format, hostile values
    "dim": (40, "<8h", None),
    "datatype": (70, "<h", [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 511, 1536, 2304, -1, 32767]),
    "bitpix": (72, "<h", [0, 1, 7, 8, 16, 32, 64, -8, 32767]),
    "pixdim": (76, "<8f", None),
    "vox_offset": (108, "<f", [0.0, 1.0, 352.0, 351.0, -352.0, 1e30, float("nan"), 2.0**40]),
    "scl_slope": (112, "<f", [0.0, -1.0, 1e38, float("nan"), float("inf")]),
    "scl_inter": (116, "<f", [1e38, float("-inf"), float("nan")]),
    "qform_code": (252, "<h", [0, 1, 2, 5, -1, 32767]),
    "sform_code": (254, "<h", [0, 1, 4, -3]),
    "srow_x": (280, "<4f", None),
    "magic": (344, "4s", [b"n+1\x00", b"ni1\x00", b"n+2\x00", b"\x00\x00\x00\x00"]),
}
_NIFTI_DIMS = [0, 1, 2, 3, 4, 7, 8, -1, 255, 4096, 32767, -32768]


def nifti_case(rng: random.Random) -> tuple[str, bytes]:
    """A NIfTI-1 volume written by nibabel, then given hostile header fields (dims, data
    type, voxel offset, scaling, affine, magic), truncated or padded, byte-mutated, or
    gzipped (sometimes with a body far longer than the header claims)."""
    import nibabel as nib

    shape = tuple(rng.randrange(1, 40) for _ in range(rng.choice((2, 3, 3, 3, 4))))
    dtype = rng.choice((np.float32, np.int16, np.uint8, np.float64))
    values = np.random.default_rng(rng.randrange(1 << 30)).normal(50, 40, shape).astype(dtype)
    image = nib.Nifti1Image(values, np.diag([rng.choice((1.0, -0.8, 0.7)), 1.0, 5.0, 1.0]))
    data = bytearray(image.to_bytes())
    for _ in range(rng.choice((0, 1, 1, 2, 3))):
        name = rng.choice(list(_NIFTI_FIELDS))
        offset, fmt, hostile = _NIFTI_FIELDS[name]
        if name == "dim":
            dims = [rng.choice((0, 1, 2, 3, 4, 5, 8, -1))]
            dims += [rng.choice(_NIFTI_DIMS) if rng.random() < 0.4 else rng.randrange(1, 40)]
            dims += [rng.choice(_NIFTI_DIMS) if rng.random() < 0.3 else 1 for _ in range(6)]
            struct.pack_into(fmt, data, offset, *dims)
        elif hostile is None:  # pixdim, srow_x: a float vector with zeros, NaN and huge values
            count = int(fmt[1])
            picks = (0.0, -1.0, 1e-30, 1e30, float("nan"), float("inf"), 0.5)
            struct.pack_into(fmt, data, offset, *(rng.choice(picks) for _ in range(count)))
        else:
            struct.pack_into(fmt, data, offset, rng.choice(hostile))
    ending = rng.random()
    if ending < 0.15:
        data = data[: rng.randrange(0, len(data))]
    elif ending < 0.25:
        data += rng.randbytes(rng.randrange(1, 5000))
    elif ending < 0.45:
        data = bytearray(mutate_bytes(bytes(data), rng))
    if rng.random() < 0.35:
        if rng.random() < 0.3:  # far more inflated bytes than the header claims
            data += b"\x00" * rng.choice((1 << 20, 16 << 20))
        return "v.nii.gz", gzip.compress(bytes(data), 1)
    return rng.choice(("v.nii", "v.nii", "x")), bytes(data)


@dataclass(frozen=True)
class Case:
    """One case: files to write (relative path -> bytes), symlinks (path -> target)."""

    index: int
    label: str
    files: dict[str, bytes]
    links: dict[str, str] = field(default_factory=dict)


def make_case(seed: int, index: int) -> Case:
    """Case ``index`` of run ``seed`` (deterministic)."""
    rng = random.Random(f"{seed}:{index}")
    pick = rng.random()
    if pick < 0.55:
        label, (name, data) = "dicom", dicom_case(rng)
    elif pick < 0.75:
        label, (name, data) = "npy", npy_case(rng)
    elif pick < 0.87:
        label, (name, data) = "image", image_case(rng)
    else:
        label, (name, data) = "nifti", nifti_case(rng)
    wrap = rng.random()
    if wrap < 0.07:
        out = io.BytesIO()
        method = rng.choice((zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED))
        with zipfile.ZipFile(out, "w", method) as archive:
            archive.writestr(rng.choice((name, f"d/{name}", f"../{name}")), data)
        if rng.random() < 0.3:
            return Case(index, label + "+zip", {"s.zip": mutate_bytes(out.getvalue(), rng)})
        return Case(index, label + "+zip", {"s.zip": out.getvalue()})
    if wrap < 0.09:
        return Case(index, label + "+gz", {name + ".gz": gzip.compress(data, 1)})
    if wrap < 0.11:
        return Case(
            index, label + "+link-out", {"../outside/" + name: data}, {"l": "../outside/" + name}
        )
    if wrap < 0.13:
        return Case(index, label + "+link-in", {"d/" + name: data}, {"l": "d/" + name})
    return Case(index, label, {name: data})


# --------------------------------------------------------------------------- one case


@dataclass
class Outcome:
    """What one case did."""

    index: int
    label: str
    status: str = "ok"  # ok | escaped | unexplained | tree | hang | killed
    detail: str = ""
    rows: dict[str, int] = field(default_factory=dict)
    memory_errors: int = 0
    slices_read: int = 0
    reasons: list[str] = field(default_factory=list)


def run_case(case: Case, base: Path) -> Outcome:
    """Write the case into a fresh study folder and run it through the runtime."""
    from btd_core.slices.profiles import CT, MRI
    from btd_core.slices.tiling import extract_tiles, select_body_tiles, tile_grid, tiles_nbytes
    from btd_core.slices.windowing import to_model_range
    from btd_core.study.discovery import discover
    from btd_core.study.pixels import SliceReadError, read_slice

    outcome = Outcome(case.index, case.label)
    folder = base / f"c{case.index}"
    study = folder / "study"
    study.mkdir(parents=True)
    try:
        for rel, data in case.files.items():
            path = study / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        for rel, target in case.links.items():
            os.symlink(target, study / rel)
        before = tree_fingerprint(study)
        where = "discover"
        try:
            found = discover(study)
            counts = Counter(f.status for f in found.files)
            outcome.rows = dict(counts)
            for record in found.files:
                if record.status != "pending" and not record.reason:
                    outcome.status, outcome.detail = "unexplained", f"{record.relpath}: no reason"
                if "MemoryError" in record.reason:
                    outcome.memory_errors += 1
                if record.status == "error":
                    outcome.reasons.append(record.reason[:48])
            profile = CT if case.index % 2 else MRI
            for series in found.series:
                picks = sorted({0, len(series.slices) // 2, len(series.slices) - 1})
                for index in picks[:SLICES_PER_CASE]:
                    ref = series.slices[index]
                    where = "read_slice"
                    try:
                        pixels = read_slice(series, ref)
                    except SliceReadError as err:
                        if "MemoryError" in str(err):
                            outcome.memory_errors += 1
                        outcome.reasons.append("read: " + str(err)[:42])
                        continue
                    outcome.slices_read += 1
                    where = "windowing"
                    image = to_model_range(pixels, series, ref, profile)
                    where = "tiling"
                    size = profile.patch_size
                    grid = tile_grid(image.shape[0], image.shape[1], size, size // 2)
                    select_body_tiles(image, grid)
                    if tiles_nbytes(image.shape[0], image.shape[1], size, size // 2) <= (
                        FULL_TILES_BYTES
                    ):
                        extract_tiles(image, grid)
        except Exception as exc:
            outcome.status = "escaped"
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            outcome.detail = (
                f"{where}: {type(exc).__name__}: {str(exc)[:120]} "
                f"({Path(frame.filename).name}:{frame.lineno})"
            )
        after = tree_fingerprint(study)
        if after != before and outcome.status == "ok":
            outcome.status, outcome.detail = "tree", "the study folder changed"
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return outcome


# --------------------------------------------------------------------------- children


def _child(
    conn: Connection, seed: int, indices: list[int], base: str, memory_mb: int
) -> None:  # pragma: no cover - runs in a child process
    """Run cases in order, posting ("start", i) before and ("done", outcome) after each."""
    cap = memory_mb << 20
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    warnings.simplefilter("ignore")  # pydicom warns on every odd value it writes or reads
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)  # a codec's Rust panic prints a backtrace; it becomes an error row
    for index in indices:
        conn.send(("start", index))
        outcome = run_case(make_case(seed, index), Path(base))
        conn.send(("done", asdict(outcome)))
    conn.send(("end", None))
    conn.close()


@dataclass
class _Worker:
    process: mp.process.BaseProcess
    conn: Connection
    pending: list[int]
    current: int | None = None
    started: float = 0.0


def run_all(
    seed: int,
    count: int,
    workers: int,
    batch: int,
    timeout: float,
    memory_mb: int,
    base: Path,
    progress: bool = False,
) -> list[Outcome]:
    """Run cases 0..count-1 in ``workers`` child processes, ``batch`` cases per child;
    a child that hangs past ``timeout`` seconds on one case is killed (that case: hang),
    one that dies is counted (killed) and its remaining cases go to a fresh child."""
    for module in RUNTIME_MODULES:  # loaded once, before the children fork
        importlib.import_module(module)
    sources()
    context = mp.get_context("fork")
    queue = [list(range(start, min(start + batch, count))) for start in range(0, count, batch)]
    results: dict[int, Outcome] = {}
    running: list[_Worker] = []
    last_report = time.monotonic()

    def launch(indices: list[int]) -> None:
        parent, child = context.Pipe(duplex=False)
        process = context.Process(
            target=_child, args=(child, seed, indices, str(base), memory_mb), daemon=True
        )
        process.start()
        child.close()
        running.append(_Worker(process, parent, list(indices)))

    while queue or running:
        while queue and len(running) < workers:
            launch(queue.pop(0))
        ready = wait([w.conn for w in running], timeout=0.5)
        now = time.monotonic()
        for worker in list(running):
            if worker.conn in ready:
                try:
                    kind, payload = worker.conn.recv()
                except (EOFError, OSError):
                    worker.process.join(5)
                    code = worker.process.exitcode
                    if worker.current is not None:
                        results[worker.current] = Outcome(
                            worker.current,
                            make_case(seed, worker.current).label,
                            "killed",
                            f"child exit code {code}",
                        )
                        rest = worker.pending[worker.pending.index(worker.current) + 1 :]
                        if rest:
                            queue.insert(0, rest)
                    running.remove(worker)
                    continue
                if kind == "start":
                    worker.current, worker.started = payload, now
                elif kind == "done":
                    results[payload["index"]] = Outcome(**payload)
                    worker.current = None
                else:
                    worker.process.join(5)
                    running.remove(worker)
            elif worker.current is not None and now - worker.started > timeout:
                worker.process.kill()
                worker.process.join(5)
                results[worker.current] = Outcome(
                    worker.current, make_case(seed, worker.current).label, "hang", f">{timeout}s"
                )
                rest = worker.pending[worker.pending.index(worker.current) + 1 :]
                if rest:
                    queue.insert(0, rest)
                running.remove(worker)
        if progress and now - last_report > 10:
            last_report = now
            print(f"  {len(results)}/{count} cases", file=sys.stderr, flush=True)
    return [results[i] for i in sorted(results)]


# --------------------------------------------------------------------------- summary


def summarise(outcomes: list[Outcome], wall: float) -> dict[str, object]:
    statuses = Counter(o.status for o in outcomes)
    rows: Counter[str] = Counter()
    for o in outcomes:
        rows.update(o.rows)
    reasons = Counter(r for o in outcomes for r in o.reasons)
    return {
        "cases": len(outcomes),
        "ok": statuses.get("ok", 0),
        "escaped_exceptions": statuses.get("escaped", 0),
        "rows_without_reason": statuses.get("unexplained", 0),
        "hangs": statuses.get("hang", 0),
        "killed": statuses.get("killed", 0),
        "tree_changes": statuses.get("tree", 0),
        "memory_errors_as_rows": sum(o.memory_errors for o in outcomes),
        "memory_error_cases": [o.index for o in outcomes if o.memory_errors][:50],
        "slices_read": sum(o.slices_read for o in outcomes),
        "file_rows": dict(rows),
        "by_label": dict(Counter(o.label for o in outcomes)),
        "wall_s": round(wall, 1),
        "problems": [asdict(o) for o in outcomes if o.status != "ok"][:50],
        "top_reasons": reasons.most_common(15),
    }


def print_summary(summary: dict[str, object], command: str) -> None:
    keys = ["cases", "escaped_exceptions", "rows_without_reason", "hangs", "killed"]
    keys += ["tree_changes", "memory_errors_as_rows", "slices_read", "wall_s"]
    width = max(len(k) for k in keys)
    print(f"fuzz run: {command}")
    for key in keys:
        print(f"  {key:<{width}}  {summary[key]}")
    print(f"  {'file rows':<{width}}  {summary['file_rows']}")
    print(f"  {'cases by kind':<{width}}  {summary['by_label']}")
    print("  most frequent error reasons:")
    for reason, n in summary["top_reasons"]:  # type: ignore[attr-defined]
        print(f"    {n:6d}  {reason}")
    for problem in summary["problems"]:  # type: ignore[attr-defined]
        where = f"case {problem['index']} ({problem['label']})"
        print(f"  {where}: {problem['status']}: {problem['detail']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000, help="cases (default 1000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--batch", type=int, default=250, help="cases per child process")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds per case")
    parser.add_argument("--memory-mb", type=int, default=3072, help="child RLIMIT_AS, MiB")
    parser.add_argument("--json", type=Path, help="write the summary here")
    parser.add_argument("--case", type=int, help="run this one case in this process")
    args = parser.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="btd-fuzz-"))
    try:
        warnings.simplefilter("ignore")
        if args.case is not None:  # under the same memory cap as in a child
            cap = args.memory_mb << 20
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
            outcome = run_case(make_case(args.seed, args.case), base)
            print(json.dumps(asdict(outcome), indent=1))
            return 0 if outcome.status == "ok" else 1
        started = time.monotonic()
        outcomes = run_all(
            args.seed,
            args.count,
            args.workers,
            args.batch,
            args.timeout,
            args.memory_mb,
            base,
            progress=True,
        )
        summary = summarise(outcomes, time.monotonic() - started)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    command = " ".join(["python", "benchmarks/fuzz_inputs.py", *(argv or sys.argv[1:])])
    print_summary(summary, command)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1), encoding="utf-8")
    bad = ["escaped_exceptions", "rows_without_reason", "hangs", "killed", "tree_changes"]
    return 1 if any(summary[k] for k in bad) else 0


if __name__ == "__main__":
    raise SystemExit(main())
