"""NIfTI volumes as studies: real MR written by nibabel, scanned end to end by ``btd scan``
(positions and orientation in the report), hostile headers and streams as error rows,
and ``btd train``'s data reading them (no training)."""

from __future__ import annotations

import csv
import gzip
import json
import os
from pathlib import Path

import numpy as np
import pytest

from btd_core.cli.main import main as btd_main
from btd_core.slices.profiles import MRI
from btd_core.slices.windowing import to_model_range
from btd_core.study.discovery import discover
from btd_core.study.limits import StudyLimits
from btd_core.study.pixels import SliceReadError, read_slice

nib = pytest.importorskip("nibabel")

MR_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "btd" / "mr"
"""Where ``benchmarks/fetch_mr.py`` keeps ch2 (Debian mricron-data) and the other MR."""


@pytest.fixture(scope="module")
def ch2_crop() -> tuple[np.ndarray, np.ndarray]:
    """Twelve axial slices of ch2 (a real T1 brain MRI, 1 mm, RAS), 181 x 217 each, and
    their voxel-to-RAS affine; skipped (with how to get it) when it was not fetched."""
    path = MR_DIR / "ch2.nii.gz"
    if not path.is_file():
        pytest.skip("ch2 is not fetched: python benchmarks/fetch_mr.py")
    image = nib.load(str(path))
    first = 80
    data = np.asarray(image.dataobj[:, :, first : first + 12])
    affine = image.affine.copy()
    affine[:3, 3] = (image.affine @ np.array([0, 0, first, 1]))[:3]
    return data, affine


def real_mr_volume(slices: int = 4) -> np.ndarray:
    """pydicom's MR_small (a real 64 x 64 MR slice, int16) stacked: [64, 64, slices]."""
    import pydicom
    from pydicom.data import get_testdata_file

    pixels = pydicom.dcmread(get_testdata_file("MR_small.dcm")).pixel_array.astype(np.int16)
    return np.stack([np.roll(pixels, k, axis=0).T for k in range(slices)], axis=-1)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fp:
        return list(csv.DictReader(fp))


# --------------------------------------------------------------------------- end to end


def test_btd_scan_reads_a_real_nifti_with_positions_and_orientation(
    tmp_path: Path, mri_onnx: Path, ch2_crop: tuple[np.ndarray, np.ndarray]
):
    data, affine = ch2_crop
    study = tmp_path / "study"
    study.mkdir()
    nib.save(nib.Nifti1Image(data, affine), study / "ch2.nii.gz")
    before = sorted(p.name for p in study.iterdir())
    out = tmp_path / "report"
    assert btd_main(["scan", str(study), "--model", str(mri_onnx), "--out", str(out)]) == 0
    assert sorted(p.name for p in study.iterdir()) == before  # nothing written into it

    files = _rows(out / "files.csv")
    assert [(f["file"], f["kind"], f["status"]) for f in files] == [
        ("ch2.nii.gz", "nifti", "scored")
    ]
    findings = _rows(out / "findings.csv")
    assert len(findings) == 12
    for row in findings:
        frame = int(row["frame"])
        # first pixel (row 0, column 0): the patient's right-anterior corner, in LPS mm
        expected = affine @ np.array([data.shape[0] - 1, data.shape[1] - 1, frame, 1.0])
        assert float(row["position_x_mm"]) == pytest.approx(-expected[0])
        assert float(row["position_y_mm"]) == pytest.approx(-expected[1])
        assert float(row["position_z_mm"]) == pytest.approx(expected[2])
        assert float(row["slice_location_mm"]) == pytest.approx(expected[2])
        assert row["orientation"] == "RAS"
        assert int(row["slice_index"]) == frame  # ordered inferior to superior
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["intensity"] == "series-head-p1-99.5"
    assert report["model"]["card"]["btd.intensity"] == "series-head-p1-99.5"
    assert report["top_findings"][0]["orientation"] == "RAS"


def test_a_sagittal_stored_volume_is_read_as_the_same_axial_slices(
    tmp_path: Path, ch2_crop: tuple[np.ndarray, np.ndarray]
):
    data, affine = ch2_crop
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "axial.nii")
    # the same voxels with the S-I axis stored first (and the affine permuted to match)
    stored = np.ascontiguousarray(np.transpose(data, (2, 0, 1)))
    nib.save(nib.Nifti1Image(stored, affine[:, [2, 0, 1, 3]]), tmp_path / "sagittal.nii")
    found = {s.key: s for s in discover(tmp_path).series}
    axial, sagittal = found["nifti:axial.nii"], found["nifti:sagittal.nii"]
    assert sagittal.slices[0].orientation == "SRA"
    assert (sagittal.rows, sagittal.columns) == (axial.rows, axial.columns) == (217, 181)
    for index in (0, 5, 11):
        a, b = axial.slices[index], sagittal.slices[index]
        assert a.position == pytest.approx(b.position)
        np.testing.assert_array_equal(read_slice(axial, a), read_slice(sagittal, b))
    # patient's right on the image's left, anterior at the top (as DICOM axial)
    image = read_slice(axial, axial.slices[5])
    np.testing.assert_array_equal(image, data[::-1, ::-1, 5].T)


def test_a_4d_file_is_one_series_per_volume_and_scl_slope_applies(tmp_path: Path):
    volume = real_mr_volume(3)
    both = np.stack([volume, volume // 2], axis=-1)
    image = nib.Nifti1Image(both, np.diag([0.9, 0.9, 5.0, 1.0]))
    image.header.set_slope_inter(2.0, 10.0)
    nib.save(image, tmp_path / "two.nii.gz")
    series = discover(tmp_path).series
    assert [s.key for s in series] == ["nifti:two.nii.gz:volume1", "nifti:two.nii.gz:volume2"]
    assert [len(s.slices) for s in series] == [3, 3]
    second = series[1]
    values = read_slice(second, second.slices[1])
    np.testing.assert_allclose(values, (volume[::-1, ::-1, 1] // 2).T * 2.0 + 10.0)
    assert second.slices[1].frame == 4


def test_the_mr_map_is_one_per_series(tmp_path: Path):
    """Every slice of a series through the same map: equal values, equal outputs."""
    volume = real_mr_volume(4)
    volume[:, :, 2] = np.clip(volume[:, :, 2].astype(np.int32) * 3, 0, 32767).astype(np.int16)
    nib.save(nib.Nifti1Image(volume, np.eye(4)), tmp_path / "v.nii")
    (series,) = discover(tmp_path).series
    value = float(volume[10, 10, 0])
    mapped = []
    for ref in series.slices:
        pixels = read_slice(series, ref)
        mask = pixels == value
        if mask.any():
            mapped.append(float(to_model_range(pixels, series, ref, MRI)[mask][0]))
    assert len(set(mapped)) == 1


# --------------------------------------------------------------------------- hostile files


def _hostile_study(root: Path) -> dict[str, str]:
    """Hostile NIfTI files, and what their error row must say."""
    volume = real_mr_volume(4)
    good = nib.Nifti1Image(volume, np.eye(4))
    nib.save(good, root / "good.nii")
    raw = (root / "good.nii").read_bytes()
    (root / "truncated.nii").write_bytes(raw[: len(raw) - 1000])
    (root / "truncated.nii.gz").write_bytes(gzip.compress(raw)[:-3000])
    corrupt = bytearray(gzip.compress(raw))
    corrupt[len(corrupt) // 2] ^= 0xFF
    (root / "corrupt.nii.gz").write_bytes(bytes(corrupt))

    absurd = nib.Nifti1Image(volume, np.eye(4))
    absurd.header["dim"] = [3, 30000, 30000, 32000, 1, 1, 1, 1]
    (root / "absurd.nii").write_bytes(absurd.header.binaryblock + b"\x00" * 4 + raw[352:])

    flat = nib.Nifti1Image(volume[:, :, 0], np.eye(4))  # 2-D
    nib.save(flat, root / "flat.nii")
    five = nib.Nifti1Image(volume[..., None, None], np.eye(4))  # 5-D
    nib.save(five, root / "five.nii")

    # a gzip bomb: the header claims 64 x 64 x 4 int16, the stream holds 64 MiB of zeros
    with gzip.open(root / "bomb.nii.gz", "wb") as fp:
        fp.write(raw)
        zeros = bytes(1 << 20)
        for _ in range(64):
            fp.write(zeros)

    nan = volume.astype(np.float32)
    nan[5, 5, 2] = np.nan
    nan[6, 6, 3] = np.inf
    nib.save(nib.Nifti1Image(nan, np.eye(4)), root / "nan.nii.gz")
    return {
        "truncated.nii": "truncated: the header claims",
        "truncated.nii.gz": "the gzip stream is truncated",
        "corrupt.nii.gz": "corrupt .nii.gz",
        "absurd.nii": "refused:",
        "flat.nii": "not a 3-D or 4-D volume",
        "five.nii": "not a 3-D or 4-D volume",
        "bomb.nii.gz": "inflates to more than",
    }


def test_hostile_nifti_files_are_error_rows_at_discovery(tmp_path: Path):
    study = tmp_path / "study"
    study.mkdir()
    expected = _hostile_study(study)
    limits = StudyLimits(max_frames=1000)
    discovery = discover(study, limits=limits)
    rows = {f.relpath: f for f in discovery.files}
    for name, words in expected.items():
        assert rows[name].status == "error", name
        assert rows[name].kind == "nifti", name
        assert words in rows[name].reason, (name, rows[name].reason)
    assert rows["good.nii"].status == "pending"
    assert rows["nan.nii.gz"].status == "pending"  # found by its header; read below


def test_btd_scan_reports_hostile_nifti_and_non_finite_voxels(tmp_path: Path, mri_onnx: Path):
    study = tmp_path / "study"
    study.mkdir()
    expected = _hostile_study(study)
    before = {p.name: p.stat().st_mtime_ns for p in study.iterdir()}
    out = tmp_path / "report"
    code = btd_main(["scan", str(study), "--model", str(mri_onnx), "--out", str(out)])
    assert code in (0, 1)
    assert {p.name: p.stat().st_mtime_ns for p in study.iterdir()} == before
    files = {row["file"]: row for row in _rows(out / "files.csv")}
    for name, words in expected.items():
        assert files[name]["status"] == "error" and words in files[name]["reason"], name
    assert files["nan.nii.gz"]["status"] == "error"
    assert "non-finite values" in files["nan.nii.gz"]["reason"]
    assert files["good.nii"]["status"] == "scored"


def test_a_volume_over_the_member_limit_is_refused_before_inflating(tmp_path: Path):
    nib.save(nib.Nifti1Image(real_mr_volume(4), np.eye(4)), tmp_path / "v.nii.gz")
    limits = StudyLimits(max_member_bytes=4096)
    (row,) = discover(tmp_path, limits=limits).files
    assert row.status == "error"
    assert row.reason.startswith("refused:") and "--max-member-mb" in row.reason


def test_a_changed_file_is_checked_again_when_read(tmp_path: Path):
    nib.save(nib.Nifti1Image(real_mr_volume(4), np.eye(4)), tmp_path / "v.nii")
    (series,) = discover(tmp_path).series
    raw = (tmp_path / "v.nii").read_bytes()
    (tmp_path / "v.nii").write_bytes(raw[:-5000])
    with pytest.raises(SliceReadError, match="truncated"):
        read_slice(series, series.slices[3])


# --------------------------------------------------------------------------- btd train's data


@pytest.mark.torch
def test_btd_train_data_reads_a_nifti_folder(tmp_path: Path):
    pytest.importorskip("torch", reason="btd train's data is the torch world")
    from btd_core.model.train_data import CropDataset, find_training_slices

    nib.save(nib.Nifti1Image(real_mr_volume(3), np.eye(4)), tmp_path / "a.nii.gz")
    nib.save(nib.Nifti1Image(real_mr_volume(2), np.eye(4)), tmp_path / "b.nii")
    found = find_training_slices(tmp_path, MRI)
    assert found.left_out == []
    assert len(found.slices) == 5
    crops = CropDataset(found, MRI, crop_size=32, length=4)
    crop = crops[0]
    assert tuple(crop.shape) == (1, 32, 32)
    assert float(crop.min()) >= 0.0 and float(crop.max()) <= 1.0
    assert float(crop.max()) > 0.0
