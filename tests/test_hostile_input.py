"""Hostile input (issue 14): header claims checked before allocation, symlinks out of the
study, zip studies read in place, other archives refused, cancellable discovery, tiling in
bounded memory, and a deterministic sample of the fuzz run.

Every file is real: pydicom's and pydicom-data's bundled DICOMs (re-keyed, edited with
pydicom, compressed with pydicom's RLE encoding or crafted RLE segments), ``.npy`` headers
written by numpy's own writer, zips written by :mod:`zipfile`, all into ``tmp_path``.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import lzma
import os
import subprocess
import sys
import tarfile
import threading
import time
import tracemalloc
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate
from pydicom.uid import DeflatedExplicitVRLittleEndian

from btd_core.cli.args import study_limits
from btd_core.cli.main import build_parser
from btd_core.cli.main import main as btd_main
from btd_core.slices.tiling import (
    body_mask,
    extract_tiles,
    select_body_tiles,
    tile_body_mask,
    tile_count,
    tile_grid,
    tiles_nbytes,
)
from btd_core.study.discovery import REASON_CANCELLED, REASON_LINK_OUTSIDE, discover
from btd_core.study.limits import DEFAULT_LIMITS, StudyLimits, parse_pixels
from btd_core.study.pixels import SliceReadError, read_slice
from btd_core.study.records import Discovery, FileRecord, Series, SliceRef
from tests.study_builder import tree_fingerprint, write_series

REPO = Path(__file__).resolve().parents[1]
T = TypeVar("T")


def data_file(name: str) -> Path:
    path = get_testdata_file(name)
    assert path is not None, f"pydicom test file {name} not installed"
    return Path(path)


def rows_of(found: Discovery) -> dict[str, FileRecord]:
    return {f.relpath: f for f in found.files}


def only(found: Discovery) -> FileRecord:
    (record,) = found.files
    return record


def edited(name: str, path: Path, **values: object) -> Path:
    """A bundled DICOM with header elements set by pydicom (validation is the point)."""
    ds = pydicom.dcmread(data_file(name))
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path)
    return path


def rle_dicom(path: Path, rows: int, columns: int) -> Path:
    """An 8-bit RLE Lossless DICOM of ``rows`` x ``columns`` zeros (pydicom's MR_small_RLE
    header), its segment written run by run as the standard says (rows never crossed):
    20000 x 20000 takes 6.3 MB on disk and would decode to 400 MB."""
    runs, rest = divmod(columns, 128)
    row = b"\x81\x00" * runs + (bytes([rest - 1, 0]) if rest else b"")
    header = (1).to_bytes(4, "little") + (64).to_bytes(4, "little") + bytes(56)
    ds = pydicom.dcmread(data_file("MR_small_RLE.dcm"))
    ds.Rows, ds.Columns = rows, columns
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = encapsulate([header + row * rows])
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path)
    return path


def npy_with_header(
    path: Path, shape: tuple[int, ...], descr: str = "<f4", data: bytes = b""
) -> Path:
    """A ``.npy`` whose header (numpy's own writer) claims ``shape``, followed by ``data``."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": descr, "fortran_order": False, "shape": shape}
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue() + data)
    return path


def measured(fn: Callable[[], T]) -> tuple[T, float, int]:
    """(result, seconds, peak bytes traced by tracemalloc, numpy's buffers included)."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        result = fn()
        return result, time.perf_counter() - started, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# --------------------------------------------------------------------------- item 1: .npy


def test_npy_shape_2_to_the_62_is_an_error_row_fast_and_small(tmp_path: Path) -> None:
    path = npy_with_header(tmp_path / "s" / "vol.npy", (2**62, 4, 4))
    assert path.stat().st_size == 128
    assert int(np.prod((2**62, 4, 4))) == 0  # why the size check needs Python integers
    found, seconds, peak = measured(lambda: discover(tmp_path / "s"))
    record = only(found)
    assert (record.kind, record.status) == ("npy", "error")
    assert record.reason == (
        "refused: 4611686018427387904 frames in one file is over the limit of 10000 (--max-frames)"
    )
    assert found.series == [] and seconds < 1.0 and peak < 8 << 20


@pytest.mark.parametrize(
    "shape, descr, words",
    [
        ((2**32, 2**32), "<f4", "a side is over 65535 pixels"),  # np.prod wraps to 0
        ((20000, 20000), "<f4", "20000 x 20000 pixels per frame is over the limit of 16384"),
        ((-3, 4), "<f4", "negative size"),
        ((10**30, 4), "<f4", "a side is over 65535"),
        ((3, 64, 64), "<f4", "truncated: 49152 bytes of array data expected, 100 found"),
        ((4, 4, 4, 4), "<f4", "expected a 2-D slice or a 3-D volume"),
        ((4, 4), "<c8", "unsupported data type"),
    ],
)
def test_npy_header_claims(tmp_path: Path, shape: tuple[int, ...], descr: str, words: str) -> None:
    npy_with_header(tmp_path / "x.npy", shape, descr, data=bytes(100))
    record = only(discover(tmp_path))
    assert (record.kind, record.status) == ("npy", "error") and words in record.reason


def test_npy_changed_after_discovery_is_refused_when_read(tmp_path: Path) -> None:
    np.save(tmp_path / "vol.npy", np.zeros((3, 8, 8), np.float32))
    (series,) = discover(tmp_path).series
    npy_with_header(tmp_path / "vol.npy", (2**62, 8, 8))
    with pytest.raises(SliceReadError, match=r"^refused: .* \(--max-frames\)"):
        read_slice(series, series.slices[0])
    hand_made = Series(key="k", kind="npy")  # no discovery at all: the defaults apply
    with pytest.raises(SliceReadError, match="refused"):
        read_slice(hand_made, SliceRef(tmp_path / "vol.npy", frame=0))


# --------------------------------------------------------------------------- item 1: frames


def test_dicom_with_2147483647_frames_is_an_error_row_fast(tmp_path: Path) -> None:
    edited("CT_small.dcm", tmp_path / "s" / "ct.dcm", NumberOfFrames=2147483647)
    found, seconds, peak = measured(lambda: discover(tmp_path / "s"))
    record = only(found)
    assert (record.kind, record.status) == ("dicom", "error")
    assert record.reason == (
        "refused: 2147483647 frames in one file is over the limit of 10000 (--max-frames)"
    )
    assert seconds < 2.0 and peak < 16 << 20


def test_frames_the_pixel_data_cannot_hold_are_refused(tmp_path: Path) -> None:
    edited("CT_small.dcm", tmp_path / "a.dcm", NumberOfFrames=5000)
    rtdose = pydicom.dcmread(data_file("rtdose_rle.dcm"))  # 15 RLE frames, one fragment each
    rtdose.NumberOfFrames = 100
    rtdose.save_as(tmp_path / "b.dcm")
    emri = data_file("emri_small.dcm").read_bytes()  # 10 frames of 64 x 64 x 16 bits
    (tmp_path / "c.dcm").write_bytes(emri[: len(emri) - 5 * 8192])
    rows = rows_of(discover(tmp_path))
    assert rows["a.dcm"].reason == (
        "refused: 5000 frames of 128 x 128 pixels x 1 sample x 16 bits need 163840000 bytes "
        "of pixel data, the Pixel Data element declares 32768"
    )
    assert rows["b.dcm"].reason == (
        "refused: 100 frames declared, the compressed pixel data holds 15 fragments"
    )
    assert rows["c.dcm"].status == "error"
    assert "the file holds" in rows["c.dcm"].reason and "false Number of Frames" in (
        rows["c.dcm"].reason
    )


def test_fragment_claiming_gigabytes_is_refused_before_any_read(tmp_path: Path) -> None:
    """Found by the fuzz run: pydicom reads a fragment with ``read(length)``, which
    allocates ``length`` bytes first (a MemoryError under a 3 GB cap)."""
    data = bytearray(data_file("MR_small_RLE.dcm").read_bytes())
    item = data.index(b"\xfe\xff\x00\xe0", data.index(b"\xe0\x7f\x10\x00"))
    second = data.index(b"\xfe\xff\x00\xe0", item + 8)  # the first fragment's item
    data[second + 4 : second + 8] = (0xFFFFFFF0).to_bytes(4, "little")
    (tmp_path / "rle.dcm").write_bytes(bytes(data))
    found, _, peak = measured(lambda: discover(tmp_path))
    record = only(found)
    assert record.status == "error" and record.reason.startswith(
        "refused: a compressed pixel data item claims 4294967280 bytes, the file has"
    )
    assert peak < 16 << 20


def test_frame_decoding_to_more_than_two_bytes_a_pixel_at_the_limit_is_refused(
    tmp_path: Path,
) -> None:
    """Found by the fuzz run: within the pixel count, a 16-bit RGB RLE frame of 16384^2
    made the Rust RLE decoder abort the process allocating 1.5 GiB under a 3 GB cap."""
    edited(
        "SC_rgb_rle_16bit.dcm", tmp_path / "rgb.dcm", Rows=16384, Columns=16384
    )  # 3 samples x 16 bits: 1610612736 bytes decoded, a 2.6 KB file
    record = only(discover(tmp_path))
    assert record.reason == (
        "refused: 16384 x 16384 pixels x 3 samples x 16 bits per frame decode to 1610612736 "
        "bytes, over the limit of 536870912 (16384 x 16384 x 16 bits, --max-pixels)"
    )
    edited("SC_rgb_rle_16bit.dcm", tmp_path / "rgb.dcm")  # a small colour file: listed,
    (series,) = discover(tmp_path).series  # refused when read, without being decoded
    with pytest.raises(SliceReadError, match=r"^colour image \(RGB\), expected grayscale"):
        read_slice(series, series.slices[0])


def test_frame_and_slice_limits_are_settings(tmp_path: Path) -> None:
    shutil_copy(data_file("emri_small.dcm"), tmp_path / "emri.dcm")
    write_series(tmp_path / "ct", "CT_small.dcm", 4)
    few_frames = discover(tmp_path, limits=StudyLimits(max_frames=5))
    assert rows_of(few_frames)["emri.dcm"].reason == (
        "refused: 10 frames in one file is over the limit of 5 (--max-frames)"
    )
    few_slices = discover(tmp_path, limits=StudyLimits(max_slices=12))
    statuses = [r.status for r in few_slices.files]
    assert statuses.count("pending") == 3 and statuses.count("error") == 2
    refused = [r.reason for r in few_slices.files if r.status == "error"]
    # emri.dcm came first (10 slices), then two of the four CT files fit
    over = "refused: its 1 slice would take the study over the limit of 12 slices (--max-slices)"
    assert refused == [over, over]
    assert sum(len(s.slices) for s in few_slices.series) <= 12
    small = discover(tmp_path, limits=StudyLimits(max_pixels=100))
    assert {r.reason for r in small.files} == {
        "refused: 128 x 128 pixels per frame is over the limit of 10 x 10 (--max-pixels)",
        "refused: 64 x 64 pixels per frame is over the limit of 10 x 10 (--max-pixels)",
    }


def shutil_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(source.read_bytes())


# --------------------------------------------------------------------------- item 2: pixels


@pytest.fixture(scope="module")
def big_rle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A study with one 20000 x 20000 RLE DICOM (6.3 MB)."""
    root = tmp_path_factory.mktemp("big")
    rle_dicom(root / "big.dcm", 20000, 20000)
    return root


def test_20000_square_rle_is_an_error_row_without_allocating(big_rle: Path) -> None:
    found, seconds, peak = measured(lambda: discover(big_rle))
    record = only(found)
    assert (record.kind, record.status) == ("dicom", "error")
    assert record.reason == (
        "refused: 20000 x 20000 pixels per frame is over the limit of 16384 x 16384 (--max-pixels)"
    )
    assert record.sha256 == hashlib.sha256((big_rle / "big.dcm").read_bytes()).hexdigest()
    assert peak < 16 << 20 and seconds < 5.0
    raised = discover(big_rle, limits=StudyLimits(max_pixels=parse_pixels("20000")))
    assert only(raised).status == "pending"  # the header alone: nothing decoded yet
    assert raised.series[0].rows == 20000


def test_btd_scan_of_the_20000_square_rle_exits_1_with_the_reason(
    big_rle: Path, ct_onnx: Path, tmp_path: Path
) -> None:
    before = tree_fingerprint(big_rle)
    out = tmp_path / "report"
    code = btd_main(["scan", str(big_rle), "--model", str(ct_onnx), "--out", str(out)])
    assert code == 1
    assert tree_fingerprint(big_rle) == before
    (row,) = read_files_csv(out)
    assert row["status"] == "error" and "(--max-pixels)" in row["reason"]


def test_header_changed_after_discovery_is_refused_before_decoding(tmp_path: Path) -> None:
    shutil_copy(data_file("MR_small.dcm"), tmp_path / "mr.dcm")
    (series,) = discover(tmp_path).series
    rle_dicom(tmp_path / "mr.dcm", 20000, 20000)

    def read() -> str:
        with pytest.raises(SliceReadError) as raised:
            read_slice(series, series.slices[0])
        return str(raised.value)

    message, seconds, peak = measured(read)
    assert message.startswith("refused: 20000 x 20000 pixels per frame")
    assert peak < 32 << 20 and seconds < 5.0


def test_cli_limit_flags() -> None:
    parser = build_parser()
    flags = ["--max-pixels", "300x200", "--max-frames", "7", "--max-slices", "9"]
    args = parser.parse_args(
        ["scan", "s", "--model", "m.onnx", "--out", "o", *flags, "--max-member-mb", "3"]
    )
    limits = study_limits(args)
    assert (limits.max_pixels, limits.max_frames, limits.max_slices) == (60000, 7, 9)
    assert limits.max_member_bytes == 3 << 20
    defaults = study_limits(parser.parse_args(["scan", "s", "--model", "m", "--out", "o"]))
    assert defaults == DEFAULT_LIMITS and defaults.max_pixels == 16384 * 16384
    calibrate = parser.parse_args(["calibrate", "g", "--model", "m", "--max-pixels", "512"])
    assert study_limits(calibrate).max_pixels == 512 * 512
    with pytest.raises(SystemExit):
        parser.parse_args(["scan", "s", "--model", "m", "--out", "o", "--max-pixels", "big"])


def test_btd_scan_max_pixels_flag_reaches_discovery(ct_onnx: Path, tmp_path: Path) -> None:
    study = tmp_path / "study"
    write_series(study, "CT_small.dcm", 2)
    out = tmp_path / "r"
    argv = ["scan", str(study), "--model", str(ct_onnx), "--out", str(out)]
    assert btd_main([*argv, "--max-pixels", "64"]) == 1
    reasons = {row["reason"] for row in read_files_csv(out)}
    assert reasons == {
        "refused: 128 x 128 pixels per frame is over the limit of 64 x 64 (--max-pixels)"
    }
    other = tmp_path / "other"
    write_series(other, "CT_small.dcm", 1)
    assert only(discover(other)).status == "pending"  # the flag applied to that study only


def read_files_csv(out: Path) -> list[dict[str, str]]:
    import csv

    with (out / "files.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


# --------------------------------------------------------------------------- tiling bound


@pytest.mark.parametrize(
    "shape, level", [((50, 60), 0.02), ((130, 200), 0.02), ((300, 517), 0.5), ((97, 400), -0.1)]
)
def test_tile_body_mask_equals_the_mask_of_extracted_tiles(shape: tuple[int, int], level: float):
    rng = np.random.default_rng(sum(shape))
    image = (rng.random(shape) * (rng.random(shape) > 0.7)).astype(np.float32)
    image[: shape[0] // 3] = 0.0  # air
    grid = tile_grid(shape[0], shape[1], 96, 48)
    everything = extract_tiles(image, grid)
    expected = body_mask(everything, level, 0.05)
    keep = tile_body_mask(image, grid, level, 0.05)
    np.testing.assert_array_equal(keep, expected)
    kept, tiles = select_body_tiles(image, grid, level, 0.05)
    np.testing.assert_array_equal(kept, expected)
    np.testing.assert_array_equal(tiles, everything[expected])
    assert everything.nbytes == tiles_nbytes(shape[0], shape[1], 96, 48)
    assert len(everything) == tile_count(shape[0], shape[1], 96, 48) == len(grid.origins)


def test_tiles_of_air_cost_no_memory() -> None:
    image = np.zeros((4096, 4096), np.float32)
    image[100:300, 200:400] = 0.5  # a small body
    grid = tile_grid(4096, 4096, 96, 48)
    assert tiles_nbytes(4096, 4096, 96, 48) == 85 * 85 * 96 * 96 * 4  # 266 MB for all tiles
    (keep, tiles), _, peak = measured(lambda: select_body_tiles(image, grid))
    assert int(keep.sum()) == len(tiles) < 40
    assert peak < 16 << 20  # the kept tiles and one band of rows
    # the bound at the default frame limit, from the sizes alone (Python integers)
    side = 16384
    assert tiles_nbytes(side, side, 96, 48) == 341 * 341 * 96 * 96 * 4  # 4.3 GB
    assert tiles_nbytes(1, 65535, 96, 48) == 1365 * 96 * 96 * 4  # a long thin image: 50 MB


# --------------------------------------------------------------------------- item 4: symlinks


def test_file_symlink_out_of_the_study_is_an_error_row_with_its_target(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere" / "secret.dcm"
    shutil_copy(data_file("MR_small.dcm"), outside)
    study = tmp_path / "study"
    shutil_copy(data_file("CT_small.dcm"), study / "data" / "ct.dcm")
    os.symlink(outside, study / "abs_link.dcm")
    os.symlink("../elsewhere/secret.dcm", study / "rel_link.dcm")
    os.symlink("rel_link.dcm", study / "chain.dcm")  # inside -> inside -> outside
    os.symlink("data/ct.dcm", study / "inside.dcm")
    os.symlink("data/../data/ct.dcm", study / "dotted.dcm")
    before = tree_fingerprint(study)
    found = discover(study)
    assert tree_fingerprint(study) == before
    rows = rows_of(found)
    for name in ("abs_link.dcm", "rel_link.dcm", "chain.dcm"):
        assert (rows[name].status, rows[name].reason) == ("error", REASON_LINK_OUTSIDE)
        assert rows[name].link_target == str(outside.resolve())
        assert rows[name].sha256 is None  # never opened
    for name in ("inside.dcm", "dotted.dcm"):
        assert (rows[name].kind, rows[name].status) == ("dicom", "pending")
        assert rows[name].link_target == "data/ct.dcm"
        assert rows[name].sha256 == rows["data/ct.dcm"].sha256
    assert rows["data/ct.dcm"].link_target == ""
    (series,) = found.series
    by_name = {ref.path.name: ref for ref in series.slices}
    assert set(by_name) == {"ct.dcm", "inside.dcm", "dotted.dcm"}
    assert by_name["inside.dcm"].source == (study / "data" / "ct.dcm").resolve()
    np.testing.assert_array_equal(
        read_slice(series, by_name["inside.dcm"]), read_slice(series, by_name["ct.dcm"])
    )


def test_link_swapped_after_discovery_is_not_followed_out(tmp_path: Path) -> None:
    study = tmp_path / "study"
    shutil_copy(data_file("CT_small.dcm"), study / "data" / "ct.dcm")
    os.symlink("data/ct.dcm", study / "link.dcm")
    found = discover(study)
    (series,) = found.series
    ref = next(r for r in series.slices if r.path.name == "link.dcm")
    (study / "link.dcm").unlink()
    shutil_copy(data_file("CT_small.dcm"), tmp_path / "outside.dcm")
    os.symlink(tmp_path / "outside.dcm", study / "link.dcm")
    (study / "data" / "ct.dcm").unlink()  # the resolved target, read instead of the link, is gone
    with pytest.raises(SliceReadError):
        read_slice(series, ref)


def test_files_csv_records_links(ct_onnx: Path, tmp_path: Path) -> None:
    study = tmp_path / "study"
    write_series(study / "ct", "CT_small.dcm", 2)
    first = sorted((study / "ct").iterdir())[0]
    os.symlink(f"ct/{first.name}", study / "link.dcm")
    shutil_copy(data_file("MR_small.dcm"), tmp_path / "outside.dcm")
    os.symlink(tmp_path / "outside.dcm", study / "out.dcm")
    out = tmp_path / "r"
    assert btd_main(["scan", str(study), "--model", str(ct_onnx), "--out", str(out)]) == 1
    rows = {row["file"]: row for row in read_files_csv(out)}
    assert (rows["link.dcm"]["status"], rows["link.dcm"]["link_target"]) == (
        "scored",
        f"ct/{first.name}",
    )
    assert rows["out.dcm"]["status"] == "error"
    assert rows["out.dcm"]["reason"] == REASON_LINK_OUTSIDE
    assert rows["out.dcm"]["link_target"] == str((tmp_path / "outside.dcm").resolve())
    assert rows[f"ct/{first.name}"]["link_target"] == ""


# --------------------------------------------------------------------------- item 6: archives


@pytest.fixture
def zipped_study(tmp_path: Path) -> tuple[Path, Path]:
    """study/ct.zip holding a 3-slice CT series (deflated), an MR slice in a folder, a
    3-D .npy and a PNG; returns (study, the unzipped copy)."""
    plain = tmp_path / "plain"
    write_series(plain / "ct", "CT_small.dcm", 3, seed=4)
    shutil_copy(data_file("MR_small.dcm"), plain / "mr" / "mr.dcm")
    np.save(plain / "vol.npy", np.arange(2 * 5 * 4, dtype=np.int16).reshape(2, 5, 4) - 7)
    (plain / "img").mkdir()
    Image.fromarray(np.arange(48, dtype=np.uint8).reshape(6, 8)).save(plain / "img" / "a.png")
    study = tmp_path / "study"
    study.mkdir()
    with zipfile.ZipFile(study / "ct.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(plain.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(plain).as_posix())
            else:
                archive.write(path, path.relative_to(plain).as_posix() + "/")
    return study, plain


def test_zip_study_is_read_in_place_with_member_paths_and_hashes(
    zipped_study: tuple[Path, Path],
) -> None:
    study, plain = zipped_study
    before = tree_fingerprint(study)
    found = discover(study)
    assert tree_fingerprint(study) == before and os.listdir(study) == ["ct.zip"]
    rows = rows_of(found)
    zip_row = rows["ct.zip"]
    assert (zip_row.kind, zip_row.status) == ("archive", "skipped")
    assert zip_row.sha256 == hashlib.sha256((study / "ct.zip").read_bytes()).hexdigest()
    assert "read in place: 6 members" in zip_row.reason
    members = {rel: r for rel, r in rows.items() if rel != "ct.zip"}
    expected = {
        f"ct.zip!/{p.relative_to(plain).as_posix()}": p for p in plain.rglob("*") if p.is_file()
    }
    assert set(members) == set(expected)
    for rel, record in members.items():
        content = expected[rel].read_bytes()
        assert record.sha256 == hashlib.sha256(content).hexdigest()
        assert record.size_bytes == len(content) and record.status == "pending"
        assert record.path == study / rel
    reference = {s.key: s for s in discover(plain).series}
    for series in found.series:
        twin = (
            reference[series.key.replace("ct.zip!/", "")]
            if series.kind != "dicom"
            else next(s for s in reference.values() if s.series_uid == series.series_uid)
        )
        assert len(series.slices) == len(twin.slices)
        for ref, twin_ref in zip(series.slices, twin.slices, strict=True):
            assert ref.member is not None and ref.source == (study / "ct.zip").resolve()
            assert Path(ref.member).name == twin_ref.path.name
            np.testing.assert_array_equal(read_slice(series, ref), read_slice(twin, twin_ref))
    assert tree_fingerprint(study) == before


def test_btd_scan_scores_a_zip_study(
    zipped_study: tuple[Path, Path], ct_onnx: Path, tmp_path: Path
) -> None:
    study, _ = zipped_study
    before = tree_fingerprint(study)
    out = tmp_path / "report"
    code = btd_main(["scan", str(study), "--model", str(ct_onnx), "--out", str(out)])
    assert tree_fingerprint(study) == before and os.listdir(study) == ["ct.zip"]
    rows = {row["file"]: row for row in read_files_csv(out)}
    ct_rows = [r for f, r in rows.items() if f.startswith("ct.zip!/ct/")]
    assert len(ct_rows) == 3 and {r["status"] for r in ct_rows} == {"scored"}
    assert all(len(r["sha256"]) == 64 for r in ct_rows)
    assert rows["ct.zip"]["kind"] == "archive"
    assert rows["ct.zip!/mr/mr.dcm"]["status"] == "skipped"  # MR under a CT model
    with (out / "findings.csv").open(encoding="utf-8") as handle:
        text = handle.read()
    assert "ct.zip!/ct/IM" in text
    assert code == 0  # every member read; the MR one skipped for the CT model


def test_zip_bombs_traversal_and_damage_are_error_rows(tmp_path: Path) -> None:
    study = tmp_path / "study"
    study.mkdir()
    ct = data_file("CT_small.dcm").read_bytes()
    with zipfile.ZipFile(study / "s.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("ok/ct.dcm", ct)
        with archive.open("bomb.dcm", "w") as member:  # 64 MiB of zeros, about 64 KB deflated
            for _ in range(64):
                member.write(bytes(1 << 20))
        for name in ("../evil.dcm", "/abs.dcm", "a/../../b.dcm", "C:\\win.dcm", "a//b.dcm"):
            archive.writestr(name, ct)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zipfile warns of the duplicate name: the point
            archive.writestr("twice.dcm", ct)
            archive.writestr("twice.dcm", ct)
        inner = io.BytesIO()
        with zipfile.ZipFile(inner, "w") as nested:
            nested.writestr("ct.dcm", ct)
        archive.writestr("nested.zip", inner.getvalue())
        archive.writestr("ct.dcm.gz", gzip.compress(ct))
        archive.writestr("locked.dcm", ct)  # marked encrypted below (zipfile cannot write it)
        link = zipfile.ZipInfo("link.dcm")
        link.create_system, link.external_attr = 3, (0o120777 << 16)
        archive.writestr(link, "/etc/passwd")
        archive.writestr("damaged.dcm", ct, zipfile.ZIP_STORED)
    data = bytearray((study / "s.zip").read_bytes())
    at = data.index(ct[:200], data.index(b"damaged.dcm"))
    data[at + 1000] ^= 0xFF  # the stored member's content changes: CRC-32 mismatch
    local = data.index(b"locked.dcm") - 30  # its local header; flag bit 0: encrypted
    central = data.index(b"locked.dcm", local + 40) - 46
    assert data[local : local + 4] == b"PK\x03\x04" and data[central : central + 4] == b"PK\x01\x02"
    data[local + 6] |= 0x1
    data[central + 8] |= 0x1
    (study / "s.zip").write_bytes(bytes(data))
    (study / "cut.zip").write_bytes(bytes(data[: len(data) // 2]))
    before = tree_fingerprint(study)
    found = discover(study)
    rows = rows_of(found)
    assert tree_fingerprint(study) == before
    reason = {rel: r.reason for rel, r in rows.items()}
    assert rows["s.zip!/ok/ct.dcm"].status == "pending"
    assert reason["s.zip!/bomb.dcm"].startswith("refused: 67108864 bytes compressed into")
    assert "a zip bomb?" in reason["s.zip!/bomb.dcm"]
    for name in ("../evil.dcm", "a/../../b.dcm"):
        assert "path traversal" in reason[f"s.zip!/{name}"]
    assert "absolute member name" in reason["s.zip!//abs.dcm"]
    assert "absolute member name" in reason["s.zip!/C:\\win.dcm"]
    assert "empty or '.' component" in reason["s.zip!/a//b.dcm"]
    twice = [r for r in found.files if r.relpath == "s.zip!/twice.dcm"]
    assert len(twice) == 2 and all("more than once" in r.reason for r in twice)
    assert reason["s.zip!/nested.zip"] == "archive inside an archive (zip): unpack it first"
    assert reason["s.zip!/ct.dcm.gz"] == "archive inside an archive (gzip): unpack it first"
    assert reason["s.zip!/locked.dcm"] == "encrypted archive member: cannot be read"
    assert reason["s.zip!/link.dcm"] == "symlink inside the archive, not followed"
    assert reason["s.zip!/damaged.dcm"].startswith("damaged archive member: Bad CRC-32")
    assert rows["cut.zip"].kind == "archive" and rows["cut.zip"].status == "error"
    assert reason["cut.zip"].startswith("not a valid zip archive")
    assert all(r.reason for r in rows.values() if r.status != "pending")


def test_zip_member_and_archive_limits(tmp_path: Path) -> None:
    study = tmp_path / "study"
    study.mkdir()
    noise = np.random.default_rng(0).bytes(2 << 20)
    with zipfile.ZipFile(study / "big.zip", "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("noise.bin", noise)
        for i in range(7):
            archive.writestr(f"f{i}.txt", b"x")
    small = StudyLimits(max_member_bytes=1 << 20)
    rows = rows_of(discover(study, limits=small))
    assert rows["big.zip!/noise.bin"].reason == (
        "refused: the archive member holds 2097152 bytes uncompressed, over the limit of "
        "1 MiB (--max-member-mb)"
    )
    few = rows_of(discover(study, limits=StudyLimits(max_archive_members=5)))
    assert list(few) == ["big.zip"]
    assert few["big.zip"].reason == "refused: the zip lists 8 members, over the limit of 5"


def test_deflated_dicom_that_inflates_past_the_limit_is_refused(tmp_path: Path) -> None:
    ds = pydicom.dcmread(data_file("CT_small.dcm"))
    ds.add_new(0x00091010, "OB", bytes(3 << 20))  # 3 MiB of zeros in a private element
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.save_as(tmp_path / "dfl.dcm", enforce_file_format=True)
    assert (tmp_path / "dfl.dcm").stat().st_size < 200_000
    record = only(discover(tmp_path, limits=StudyLimits(max_member_bytes=1 << 20)))
    assert record.status == "error"
    assert record.reason.startswith("refused: the deflated data set holds")
    (series,) = discover(tmp_path).series  # within the default limit: read as before
    assert read_slice(series, series.slices[0]).shape == (128, 128)


def test_other_archives_and_compressed_files_say_unpack_first(tmp_path: Path) -> None:
    ct = data_file("CT_small.dcm").read_bytes()
    (tmp_path / "ct.dcm.gz").write_bytes(gzip.compress(ct))
    (tmp_path / "ct.dcm").write_bytes(gzip.compress(ct))  # a gzip'd DICOM named like one
    (tmp_path / "ct.bz2").write_bytes(bz2.compress(ct))
    (tmp_path / "ct.xz").write_bytes(lzma.compress(ct))
    with tarfile.open(tmp_path / "ct.tar", "w") as tar:
        tar.add(data_file("CT_small.dcm"), "ct.dcm")
    with tarfile.open(tmp_path / "ct.tgz", "w:gz") as tar:
        tar.add(data_file("CT_small.dcm"), "ct.dcm")
    (tmp_path / "x.7z").write_bytes(b"7z\xbc\xaf\x27\x1c\x00\x04" + bytes(40))
    (tmp_path / "x.rar").write_bytes(b"Rar!\x1a\x07\x01\x00" + bytes(40))
    shutil_copy(data_file("zipMR.gz"), tmp_path / "zipMR.gz")  # pydicom's own gzip'd MR
    rows = rows_of(discover(tmp_path))
    expected = {
        "ct.dcm.gz": "gzip",
        "ct.dcm": "gzip",
        "ct.bz2": "bzip2",
        "ct.xz": "xz",
        "ct.tar": "tar",
        "ct.tgz": "gzip",
        "x.7z": "7-Zip",
        "x.rar": "RAR",
        "zipMR.gz": "gzip",
    }
    for name, kind in expected.items():
        assert (rows[name].kind, rows[name].status) == ("archive", "error")
        assert rows[name].reason == f"compressed archive ({kind}): unpack it first"


# --------------------------------------------------------------------------- cancelling


def test_discovery_stops_when_asked_and_returns_what_it_found(tmp_path: Path) -> None:
    write_series(tmp_path / "a", "CT_small.dcm", 6)
    calls = 0

    def third_call() -> bool:
        nonlocal calls
        calls += 1
        return calls >= 3

    found = discover(tmp_path, should_stop=third_call)
    assert found.cancelled is True
    assert 1 <= len(found.files) < 6
    assert all(r.status in ("pending", "skipped") for r in found.files)
    whole = discover(tmp_path)
    assert whole.cancelled is False and len(whole.files) == 6


def test_discovery_checks_inside_a_long_multiframe_header(tmp_path: Path) -> None:
    ds = pydicom.dcmread(data_file("CT_small.dcm"))
    ds.Rows = ds.Columns = 1
    ds.NumberOfFrames = 3000
    ds.PixelData = bytes(2 * 3000)
    ds.save_as(tmp_path / "frames.dcm")
    calls = 0

    def count() -> bool:
        nonlocal calls
        calls += 1
        return False

    (series,) = discover(tmp_path, should_stop=count).series
    assert len(series.slices) == 3000 and calls >= 3000 // 64
    stop_at = calls // 2
    calls = 0

    def halfway() -> bool:
        nonlocal calls
        calls += 1
        return calls >= stop_at

    found = discover(tmp_path, should_stop=halfway)
    assert found.cancelled and found.series == []
    assert [(r.status, r.reason) for r in found.files] == [("skipped", REASON_CANCELLED)]


def test_discovery_ends_within_a_second_of_the_request(tmp_path: Path) -> None:
    ct = data_file("CT_small.dcm").read_bytes()
    for i in range(600):
        (tmp_path / f"s{i:04d}.dcm").write_bytes(ct)
    stop = threading.Event()
    timer = threading.Timer(0.3, stop.set)
    timer.start()
    started = time.monotonic()
    found = discover(tmp_path, should_stop=stop.is_set)
    ended = time.monotonic()
    timer.join()
    if found.cancelled:
        assert ended - started < 0.3 + 1.0
        assert 0 < len(found.files) < 600
    else:  # a fast machine walked all 600 files in under 0.3 s
        assert len(found.files) == 600


# --------------------------------------------------------------------------- fuzz sample


def test_fuzz_sample_has_no_escapes_hangs_kills_or_tree_changes(tmp_path: Path) -> None:
    summary_path = tmp_path / "fuzz.json"
    script = str(REPO / "benchmarks" / "fuzz_inputs.py")
    run = ["--seed", "3", "--workers", "2", "--batch", "100", "--json", str(summary_path)]
    done = subprocess.run(
        [sys.executable, script, "--count", "200", *run],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=REPO,
    )
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    assert done.returncode == 0, done.stdout[-3000:]
    assert summary["cases"] == 200
    for key in ("escaped_exceptions", "rows_without_reason", "hangs", "killed", "tree_changes"):
        assert summary[key] == 0, (key, summary["problems"])
    assert summary["file_rows"].get("error", 0) > 0 and summary["slices_read"] > 0
