"""Discovery on real files: pydicom's and pydicom-data's test files, copied and re-keyed.

Every study is built in a temporary folder from real DICOM files (new UIDs, positions
along an oblique normal, shuffled names), real PNG/TIFF files written by Pillow and
real ``.npy`` files written by numpy.  Nothing is mocked.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import random
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import FileMetaDataset
from pydicom.uid import generate_uid

from btd_core.study.discovery import (
    REASON_BROKEN_SYMLINK,
    REASON_DICOMDIR,
    REASON_DIR_SYMLINK,
    REASON_EMPTY,
    REASON_NO_PIXELS,
    REASON_UNKNOWN,
    discover,
    natural_key,
)
from btd_core.study.file_access import REASON_NOT_REGULAR, REASON_PERMISSION, REASON_SYMLINK_LOOP
from btd_core.study.pixels import SliceReadError, read_slice
from btd_core.study.records import Discovery, FileRecord, Series

NOBODY = 65534


def data_file(name: str) -> Path:
    path = get_testdata_file(name)
    assert path is not None, f"pydicom test file {name} not installed"
    return Path(path)


def oblique_orientation() -> tuple[list[float], list[float], np.ndarray]:
    """Row and column cosines of an oblique plane, and its unit normal."""
    a, b = math.radians(25), math.radians(40)
    row = np.array([math.cos(a), math.sin(a), 0.0])
    col = np.array([-math.sin(a) * math.cos(b), math.cos(a) * math.cos(b), math.sin(b)])
    normal = np.cross(row, col)
    return row.tolist(), col.tolist(), normal / np.linalg.norm(normal)


def write_series(
    folder: Path,
    n: int,
    *,
    source: str = "CT_small.dcm",
    seed: int = 0,
    positions: bool = True,
    instance_numbers: list[int | None] | None = None,
    names: list[str] | None = None,
) -> list[str]:
    """Write ``n`` slices of one new series; returns SOP Instance UIDs in anatomical order.

    Slice ``k`` (anatomical index) lies at ``k * 2.5`` mm along an oblique normal.  Files
    are written in shuffled order under shuffled names; ``instance_numbers[k]`` is slice
    ``k``'s Instance Number (``None`` list: deliberately not in anatomical order).
    """
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    row, col, normal = oblique_orientation()
    origin = np.array([-120.0, 35.5, 410.25])
    study, series = generate_uid(), generate_uid()
    if instance_numbers is None:
        instance_numbers = list(range(1, n + 1))
        rng.shuffle(instance_numbers)
    names = (
        list(names)
        if names
        else [f"{generate_uid()[-12:]}.{rng.choice(['dcm', 'DCM', 'ima'])}" for _ in range(n)]
    )
    rng.shuffle(names)
    uids = [generate_uid() for _ in range(n)]
    for k in rng.sample(range(n), n):
        ds = pydicom.dcmread(data_file(source))
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study, series, uids[k]
        ds.file_meta.MediaStorageSOPInstanceUID = uids[k]
        if positions:
            ds.ImageOrientationPatient = [round(v, 6) for v in row + col]
            ds.ImagePositionPatient = [round(v, 4) for v in (origin + k * 2.5 * normal)]
        else:
            del ds.ImagePositionPatient
        if instance_numbers[k] is None:
            del ds.InstanceNumber
        else:
            ds.InstanceNumber = instance_numbers[k]
        ds.save_as(folder / names[k])
    return uids


def sop_uids(series: Series) -> list[str]:
    return [ref.sop_instance_uid for ref in series.slices]


def only_series(found: Discovery) -> Series:
    assert len(found.series) == 1, [s.key for s in found.series]
    return found.series[0]


def record(found: Discovery, relpath: str) -> FileRecord:
    matches = [f for f in found.files if f.relpath == relpath]
    assert len(matches) == 1, relpath
    return matches[0]


# --------------------------------------------------------------------------- DICOM order


def test_order_by_slice_normal_not_instance_number(tmp_path: Path) -> None:
    expected = write_series(tmp_path / "ct", 7, instance_numbers=[5, 1, 7, 2, 6, 3, 4])
    series = only_series(discover(tmp_path))
    assert series.ordering == "slice normal"
    assert sop_uids(series) == expected
    locations = [ref.location for ref in series.slices]
    assert all(b - a == pytest.approx(2.5, abs=1e-3) for a, b in itertools.pairwise(locations))
    assert [ref.instance_number for ref in series.slices] == [5, 1, 7, 2, 6, 3, 4]
    assert series.kind == "dicom" and series.modality == "CT"
    assert {ref.orientation for ref in series.slices} == {"LPS"}  # plain axial slices
    assert (series.rows, series.columns) == (128, 128)
    assert series.key == series.series_uid and series.study_uid
    assert series.patient_name == str(pydicom.dcmread(data_file("CT_small.dcm")).PatientName)
    assert all(ref.rescale_intercept == -1024.0 for ref in series.slices)


def test_order_falls_back_to_instance_number(tmp_path: Path) -> None:
    numbers = [3, 9, 4, 1, 12]
    uids = write_series(tmp_path, 5, positions=False, instance_numbers=numbers)
    series = only_series(discover(tmp_path))
    assert series.ordering == "instance number"
    by_number = [uid for _, uid in sorted(zip(numbers, uids, strict=True))]
    assert sop_uids(series) == by_number
    assert all(ref.position is None and ref.location is None for ref in series.slices)


def test_order_falls_back_to_natural_file_name(tmp_path: Path) -> None:
    names = ["im10.dcm", "im2.dcm", "im1.dcm", "IM3.dcm"]
    write_series(tmp_path, 4, positions=False, instance_numbers=[None] * 4, names=names)
    series = only_series(discover(tmp_path))
    assert series.ordering == "file name"
    assert [ref.path.name for ref in series.slices] == ["im1.dcm", "im2.dcm", "IM3.dcm", "im10.dcm"]


def test_equal_locations_are_ordered_by_instance_number(tmp_path: Path) -> None:
    uids = write_series(tmp_path, 3, instance_numbers=[3, 1, 2])
    for path in tmp_path.iterdir():  # move every slice to the same place
        ds = pydicom.dcmread(path)
        ds.ImagePositionPatient = [0, 0, 0]
        ds.save_as(path)
    series = only_series(discover(tmp_path))
    assert series.ordering == "slice normal"
    assert sop_uids(series) == [uids[1], uids[2], uids[0]]


def test_one_uid_with_two_slice_sizes_is_split(tmp_path: Path) -> None:
    study, series_uid = generate_uid(), generate_uid()
    for i, name in enumerate(["CT_small.dcm", "MR_small.dcm", "CT_small.dcm"]):
        ds = pydicom.dcmread(data_file(name))
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series_uid
        ds.SOPInstanceUID = generate_uid()
        ds.InstanceNumber = i + 1
        ds.save_as(tmp_path / f"{i}.dcm")
    found = discover(tmp_path)
    keys = {s.key: (s.rows, len(s.slices)) for s in found.series}
    assert keys == {series_uid: (128, 2), f"{series_uid}#2": (64, 1)}


def test_missing_series_uid_groups_by_folder(tmp_path: Path) -> None:
    for folder in ("a", "b/c"):
        write_series(tmp_path / folder, 2)
        for path in (tmp_path / folder).iterdir():
            ds = pydicom.dcmread(path)
            del ds.SeriesInstanceUID, ds.StudyInstanceUID
            ds.save_as(path)
    found = discover(tmp_path)
    assert sorted(s.key for s in found.series) == ["dicom:a", "dicom:b/c"]
    assert all(len(s.slices) == 2 and s.series_uid == "" for s in found.series)


# --------------------------------------------------------------------------- DICOM kinds


def test_file_without_preamble_is_found(tmp_path: Path) -> None:
    """pydicom's no_meta.dcm (one stray byte, then a bare dataset) and a bare MR dataset."""
    shutil.copy(data_file("no_meta.dcm"), tmp_path / "no_meta.dcm")
    ds = pydicom.dcmread(data_file("MR_small.dcm"))
    ds.preamble, ds.file_meta = None, FileMetaDataset()
    ds.save_as(tmp_path / "bare_mr", enforce_file_format=False)
    assert (tmp_path / "bare_mr").read_bytes()[128:132] != b"DICM"
    found = discover(tmp_path)
    assert {f.relpath: (f.kind, f.status) for f in found.files} == {
        "bare_mr": ("dicom", "pending"),
        "no_meta.dcm": ("dicom", "pending"),
    }
    by_modality = {s.modality: s for s in found.series}
    assert set(by_modality) == {"CT", "MR"}
    ct = by_modality["CT"]
    reference = pydicom.dcmread(data_file("CT_small.dcm")).pixel_array * 1.0 - 1024.0
    np.testing.assert_array_equal(read_slice(ct, ct.slices[0]), reference)
    mr = by_modality["MR"]
    reference = pydicom.dcmread(data_file("MR_small.dcm")).pixel_array
    np.testing.assert_array_equal(read_slice(mr, mr.slices[0]), reference)


def test_dicomdir_is_skipped_with_reason(tmp_path: Path) -> None:
    shutil.copy(data_file("DICOMDIR"), tmp_path / "DICOMDIR")
    found = discover(tmp_path)
    assert found.series == []
    rec = record(found, "DICOMDIR")
    assert (rec.kind, rec.status, rec.reason) == ("dicomdir", "skipped", REASON_DICOMDIR)


def test_dicom_without_images(tmp_path: Path) -> None:
    shutil.copy(data_file("rtplan.dcm"), tmp_path / "plan.dcm")
    shutil.copy(data_file("test-SR.dcm"), tmp_path / "report")
    ds = pydicom.dcmread(data_file("CT_small.dcm"))
    del ds.PixelData
    ds.save_as(tmp_path / "nopixels.dcm")
    found = discover(tmp_path)
    assert found.series == []
    assert record(found, "plan.dcm").reason == "no pixel data (RT Plan Storage)"
    assert record(found, "report").reason == "no pixel data (Comprehensive SR Storage)"
    assert record(found, "plan.dcm").status == record(found, "report").status == "skipped"
    nopix = record(found, "nopixels.dcm")
    assert (nopix.kind, nopix.status, nopix.reason) == ("dicom", "error", REASON_NO_PIXELS)


def test_enhanced_ct_has_per_frame_positions_and_rescale(tmp_path: Path) -> None:
    shutil.copy(data_file("eCT_Supplemental.dcm"), tmp_path / "ect.dcm")
    series = only_series(discover(tmp_path))
    assert series.ordering == "slice normal" and len(series.slices) == 2
    positions = {ref.frame: ref.position for ref in series.slices}
    assert positions == {0: (99.5, -301.5, -159.0), 1: (99.5, -301.5, -149.0)}
    # normal = (-1, 0, 0) x (0, 1, 0) = (0, 0, -1): location = -z, frame 1 comes first
    assert [ref.location for ref in series.slices] == [149.0, 159.0]
    assert all(
        ref.rescale_intercept == -1024.0 and ref.rescale_slope == 1.0 for ref in series.slices
    )
    assert all(ref.window == (49.0, 102.0) for ref in series.slices)


def test_classic_multiframe_is_ordered_by_frame(tmp_path: Path) -> None:
    shutil.copy(data_file("emri_small.dcm"), tmp_path / "emri.dcm")
    series = only_series(discover(tmp_path))
    assert series.ordering == "frame"
    assert [ref.frame for ref in series.slices] == list(range(10))


def test_text_and_random_files(tmp_path: Path) -> None:
    (tmp_path / "x.dcm").write_text("not a DICOM file at all\n" * 20)
    random_bytes = random.Random(7).randbytes(4096)
    (tmp_path / "random.bin").write_bytes(random_bytes)
    (tmp_path / "random.DCM").write_bytes(random_bytes)
    (tmp_path / "notes.txt").write_text("hello")
    found = discover(tmp_path)
    assert found.series == []
    for name in ("x.dcm", "random.DCM"):
        rec = record(found, name)
        assert rec.status == "error" and rec.reason.startswith("not a valid DICOM file: ")
    for name in ("random.bin", "notes.txt"):
        assert (record(found, name).status, record(found, name).reason) == (
            "skipped",
            REASON_UNKNOWN,
        )


# --------------------------------------------------------------------------- images, .npy


def test_png_series_natural_order_and_split_by_size(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for i in (10, 2, 1):
        pixels = rng.integers(0, 255, (20, 30), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / f"slice{i}.png")
    Image.fromarray(np.zeros((8, 8), np.uint16)).save(tmp_path / "small.png")
    (tmp_path / "sub").mkdir()
    Image.fromarray(np.zeros((5, 6, 3), np.uint8)).save(tmp_path / "sub" / "photo.jpg")
    found = discover(tmp_path)
    by_key = {s.key: s for s in found.series}
    assert set(by_key) == {"image:.", "image:.#2", "image:sub"}
    root = by_key["image:."]
    assert [r.path.name for r in root.slices] == ["slice1.png", "slice2.png", "slice10.png"]
    assert (root.rows, root.columns, root.ordering, root.kind) == (20, 30, "file name", "image")
    assert (by_key["image:.#2"].rows, len(by_key["image:.#2"].slices)) == (8, 1)
    assert (by_key["image:sub"].rows, by_key["image:sub"].columns) == (5, 6)
    assert all(f.kind == "image" and f.status == "pending" for f in found.files)


def test_multipage_tiff_is_a_volume(tmp_path: Path) -> None:
    pages = [Image.fromarray(np.full((6, 7), i * 40, np.uint8)) for i in range(3)]
    pages[0].save(tmp_path / "stack.tif", save_all=True, append_images=pages[1:])
    series = only_series(discover(tmp_path))
    assert (series.key, series.ordering, len(series.slices)) == ("image:stack.tif", "frame", 3)
    assert [float(read_slice(series, r)[0, 0]) for r in series.slices] == pytest.approx(
        [0, 40 / 255, 80 / 255]
    )


def test_npy_slices_and_volumes(tmp_path: Path) -> None:
    (tmp_path / "slices").mkdir()
    for i in (11, 3):
        np.save(tmp_path / "slices" / f"s{i}.npy", np.full((4, 5), i, np.int16))
    np.save(tmp_path / "vol.npy", np.arange(3 * 4 * 5, dtype=np.float64).reshape(3, 4, 5))
    np.save(tmp_path / "bad4d.npy", np.zeros((2, 2, 2, 2)))
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(tmp_path / "text.npy", np.array(["a", "b"]))
    full = np.zeros((6, 6), np.float32)
    np.save(tmp_path / "cut.npy", full)
    data = (tmp_path / "cut.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(data[: len(data) - 40])
    found = discover(tmp_path)
    by_key = {s.key: s for s in found.series}
    assert set(by_key) == {"npy:slices", "npy:vol.npy"}
    slices = by_key["npy:slices"]
    assert [r.path.name for r in slices.slices] == ["s3.npy", "s11.npy"]
    assert (slices.rows, slices.columns, slices.ordering) == (4, 5, "file name")
    vol = by_key["npy:vol.npy"]
    assert (vol.rows, vol.columns, vol.ordering, [r.frame for r in vol.slices]) == (
        4,
        5,
        "frame",
        [0, 1, 2],
    )
    for name, words in [
        ("bad4d.npy", "shape (2, 2, 2, 2)"),
        ("objects.npy", "object arrays"),
        ("text.npy", "unsupported data type"),
        ("cut.npy", "truncated"),
    ]:
        rec = record(found, name)
        assert (rec.kind, rec.status) == ("npy", "error") and words in rec.reason, rec.reason


# --------------------------------------------------------------------------- records, hashing


def test_records_sizes_hashes_and_sorting(tmp_path: Path) -> None:
    write_series(tmp_path / "b", 2)
    (tmp_path / "a.txt").write_text("x")
    found = discover(tmp_path)
    assert [f.relpath for f in found.files] == sorted(f.relpath for f in found.files)
    assert found.root == tmp_path
    for f in found.files:
        content = f.path.read_bytes()
        assert f.size_bytes == len(content)
        assert f.sha256 == hashlib.sha256(content).hexdigest()
        assert f.path == tmp_path / f.relpath
    assert all(f.sha256 is None for f in discover(tmp_path, hash_files=False).files)


def test_discovery_is_deterministic(tmp_path: Path) -> None:
    write_series(tmp_path / "x", 4)
    write_series(tmp_path / "y", 3, seed=3)
    assert discover(tmp_path) == discover(tmp_path)


def test_root_must_be_a_folder(tmp_path: Path) -> None:
    with pytest.raises(NotADirectoryError):
        discover(tmp_path / "missing")
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError):
        discover(tmp_path / "f")


def test_natural_key() -> None:
    names = ["s10", "s2", "S1", "a", "s02"]
    assert sorted(names, key=natural_key) == ["a", "S1", "s02", "s2", "s10"]


def test_symlinks_to_files_are_examined_fifos_never_opened(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    shutil.copy(data_file("MR_small.dcm"), tmp_path / "data" / "mr.dcm")
    os.mkfifo(tmp_path / "data" / "pipe")
    os.symlink("data/mr.dcm", tmp_path / "link.dcm")
    os.symlink("data/pipe", tmp_path / "pipe_link.dcm")
    found = discover(tmp_path)
    link = record(found, "link.dcm")
    assert (link.kind, link.status, link.path) == ("dicom", "pending", tmp_path / "link.dcm")
    assert link.sha256 == record(found, "data/mr.dcm").sha256
    assert record(found, "pipe_link.dcm").reason == REASON_NOT_REGULAR
    assert record(found, "data/pipe").reason == REASON_NOT_REGULAR
    series = only_series(found)  # same Series UID: the link and its target are two slices
    assert {ref.path.name for ref in series.slices} == {"mr.dcm", "link.dcm"}


# --------------------------------------------------------------------------- hostile study


def snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    """Every entry (never following symlinks, never opening non-regular files)."""
    state: dict[str, tuple[object, ...]] = {}
    for folder, dirs, files in os.walk(root, followlinks=False):
        for name in dirs + files:
            path = Path(folder) / name
            st = os.lstat(path)
            rel = str(path.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                state[rel] = ("link", os.readlink(path), st.st_mtime_ns)
            elif stat.S_ISREG(st.st_mode):
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                state[rel] = ("file", st.st_size, st.st_mtime_ns, st.st_mode, digest)
            else:
                state[rel] = ("other", stat.S_IFMT(st.st_mode), st.st_mtime_ns, st.st_mode)
    state["."] = ("root", os.lstat(root).st_mtime_ns, tuple(sorted(os.listdir(root))))
    return state


def build_hostile_study(root: Path) -> list[str]:
    """A good series plus every kind of bad entry; returns the good series' SOP UIDs."""
    expected = write_series(root / "good", 4)
    data = data_file("693_UNCI.dcm").read_bytes()
    (root / "truncated.dcm").write_bytes(data[: len(data) - 200_000])  # inside Pixel Data
    (root / "x.dcm").write_text("this is a text file with a DICOM name\n")
    noise = random.Random(1).randbytes(3000)
    (root / "random.bin").write_bytes(noise)
    (root / "random.dcm").write_bytes(noise)
    ds = pydicom.dcmread(data_file("CT_small.dcm"))
    del ds.PixelData
    ds.save_as(root / "nopixels.dcm")
    (root / "empty.dcm").write_bytes(b"")
    os.mkfifo(root / "fifo.dcm")
    os.symlink("does-not-exist.dcm", root / "broken.dcm")
    os.symlink("loop_b", root / "loop_a")
    os.symlink("loop_a", root / "loop_b")
    os.symlink("..", root / "good" / "parent")
    os.symlink("good", root / "good_link")
    return expected


def test_hostile_study(tmp_path: Path) -> None:
    root = tmp_path / "study"
    root.mkdir()
    expected = build_hostile_study(root)
    before = snapshot(root)
    found = discover(root)
    assert snapshot(root) == before
    rows = {f.relpath: (f.kind, f.status, f.reason) for f in found.files}
    assert all(reason for kind, status, reason in rows.values() if status != "pending")
    assert rows["truncated.dcm"][:2] == ("dicom", "pending")
    assert rows["x.dcm"][1] == "error" and rows["x.dcm"][2].startswith("not a valid DICOM")
    assert rows["random.dcm"][1] == "error" and rows["random.dcm"][2].startswith("not a valid")
    assert rows["random.bin"] == ("unknown", "skipped", REASON_UNKNOWN)
    assert rows["nopixels.dcm"] == ("dicom", "error", REASON_NO_PIXELS)
    assert rows["empty.dcm"] == ("unknown", "error", REASON_EMPTY)
    assert rows["fifo.dcm"] == ("unknown", "skipped", REASON_NOT_REGULAR)
    assert rows["broken.dcm"] == ("unknown", "error", REASON_BROKEN_SYMLINK)
    assert rows["loop_a"] == rows["loop_b"] == ("unknown", "error", REASON_SYMLINK_LOOP)
    assert "symlink loop" in REASON_SYMLINK_LOOP
    assert rows["good/parent"] == ("unknown", "skipped", REASON_DIR_SYMLINK)
    assert rows["good_link"] == ("unknown", "skipped", REASON_DIR_SYMLINK)
    assert len(rows) == 4 + 12  # nothing reached through the directory symlinks
    good = [s for s in found.series if len(s.slices) == 4]
    assert len(good) == 1 and sop_uids(good[0]) == expected
    for ref in good[0].slices:
        assert read_slice(good[0], ref).shape == (128, 128)
    (truncated,) = [s for s in found.series if s.slices[0].path.name == "truncated.dcm"]
    with pytest.raises(SliceReadError):
        read_slice(truncated, truncated.slices[0])
    assert snapshot(root) == before


# --------------------------------------------------------------------------- permissions

_CHILD = """
import json, sys
from pathlib import Path
from btd_core.study.discovery import discover
found = discover(Path(sys.argv[1]))
print(json.dumps([[f.relpath, f.status, f.reason] for f in found.files]))
"""


def _nobody_tree() -> Path:
    """A world-readable tree (outside pytest's root-only tmp) with a locked file and folder."""
    root = Path(tempfile.mkdtemp(prefix="btd-perm-"))
    os.chmod(root, 0o755)
    write_series(root / "good", 2)
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(root / "good" / "z.png")
    shutil.copy(data_file("MR_small.dcm"), root / "locked.dcm")
    (root / "locked_dir").mkdir()
    shutil.copy(data_file("MR_small.dcm"), root / "locked_dir" / "inside.dcm")
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            os.chmod(Path(folder) / name, 0o755)
        for name in files:
            os.chmod(Path(folder) / name, 0o644)
    os.chmod(root / "locked.dcm", 0)
    os.chmod(root / "locked_dir", 0)
    return root


def _run_as_nobody(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        user=NOBODY,
        group=NOBODY,
        extra_groups=[],
        capture_output=True,
        text=True,
        cwd="/",
        env={"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"},
        check=False,
    )


def _as_nobody_subprocess(root: Path) -> list[list[str]]:
    """Run discovery in a new interpreter as nobody (skips when nobody cannot start it)."""
    try:
        probe = _run_as_nobody(["-c", "import btd_core.study.discovery"])
    except OSError as exc:
        pytest.skip(f"user nobody cannot run {sys.executable}: {exc.strerror}")
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        pytest.skip(f"user nobody cannot import btd_core from {sys.executable}: {last}")
    done = _run_as_nobody(["-c", _CHILD, str(root)])
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _as_nobody_fork(root: Path) -> list[list[str]]:
    """Fork, drop to nobody in the child (modules already loaded), run discovery there."""
    discover(root)  # as root first: every lazily imported module is loaded before the fork
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        code = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            found = discover(root)
            rows = [[f.relpath, f.status, f.reason] for f in found.files]
            with os.fdopen(write_end, "wb") as out:
                out.write(json.dumps(rows).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        payload = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return json.loads(payload)


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to become nobody"
)
@pytest.mark.parametrize("runner", [_as_nobody_subprocess, _as_nobody_fork])
def test_permission_denied_as_nobody(runner: Callable[[Path], list[list[str]]]) -> None:
    root = _nobody_tree()
    try:
        before = snapshot(root)
        rows = {relpath: (status, reason) for relpath, status, reason in runner(root)}
        assert snapshot(root) == before
    finally:
        os.chmod(root / "locked_dir", 0o755)
        shutil.rmtree(root)
    assert rows["locked.dcm"] == ("error", REASON_PERMISSION)
    assert rows["locked_dir"] == ("error", f"{REASON_PERMISSION}: the folder could not be listed")
    good = {rel: status for rel, (status, _) in rows.items() if rel.startswith("good/")}
    assert len(good) == 3 and set(good.values()) == {"pending"}
