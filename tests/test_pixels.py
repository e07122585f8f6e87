"""Reading slices from real files: compressed DICOM against uncompressed references,
enhanced and classic multi-frame, rescale to Hounsfield units, images, ``.npy``, and a
fuzz test on mutated real DICOM files.  Nothing is mocked."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_modality_lut

from btd_core.study.discovery import discover
from btd_core.study.pixels import SliceReadError, read_slice
from btd_core.study.records import Series, SliceRef


def data_file(name: str) -> Path:
    path = get_testdata_file(name)
    assert path is not None, f"pydicom test file {name} not installed"
    return Path(path)


def series_of(folder: Path, *names: str) -> Series:
    """Copy pydicom test files into ``folder`` and discover their one series."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(data_file(name), folder / name)
    found = discover(folder)
    assert len(found.series) == 1, [(f.relpath, f.status, f.reason) for f in found.files]
    return found.series[0]


def read_all(series: Series) -> list[np.ndarray]:
    return [read_slice(series, ref) for ref in series.slices]


def reference(name: str) -> np.ndarray:
    """pydicom's own decode of a single-frame file with its modality LUT applied."""
    ds = pydicom.dcmread(data_file(name))
    return np.asarray(apply_modality_lut(ds.pixel_array, ds), dtype=np.float64)


# --------------------------------------------------------------------------- DICOM codecs


@pytest.mark.parametrize(
    "variant",
    [
        "MR_small_RLE.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_implicit.dcm",
    ],
)
def test_lossless_variants_equal_uncompressed(tmp_path: Path, variant: str) -> None:
    plain = read_all(series_of(tmp_path / "plain", "MR_small.dcm"))[0]
    other = read_all(series_of(tmp_path / "other", variant))[0]
    assert plain.dtype == other.dtype == np.float32 and plain.shape == (64, 64)
    np.testing.assert_array_equal(other, plain)
    np.testing.assert_array_equal(plain, pydicom.dcmread(data_file("MR_small.dcm")).pixel_array)


@pytest.mark.parametrize("name", ["explicit_VR-UN.dcm", "bad_sequence.dcm", "693_UNCI.dcm"])
def test_compressed_ct_in_hounsfield_units(tmp_path: Path, name: str) -> None:
    """JPEG 2000 (explicit_VR-UN), JPEG lossless (bad_sequence), uncompressed (693_UNCI)."""
    (values,) = read_all(series_of(tmp_path, name))
    assert values.shape == (512, 512)
    np.testing.assert_array_equal(values, reference(name))
    ds = pydicom.dcmread(data_file(name))
    intercept = float(ds.RescaleIntercept)
    assert values.min() == int(ds.pixel_array.min()) + intercept  # Rescale Slope 1
    assert intercept == {"explicit_VR-UN.dcm": 0.0}.get(name, -1024.0)


def test_jpeg2000_irreversible_close_to_uncompressed(tmp_path: Path) -> None:
    (lossy,) = read_all(series_of(tmp_path / "j2k", "693_J2KI.dcm"))
    (plain,) = read_all(series_of(tmp_path / "unc", "693_UNCI.dcm"))
    np.testing.assert_allclose(lossy, plain, atol=64)


def test_enhanced_ct_frames_use_functional_group_rescale(tmp_path: Path) -> None:
    series = series_of(tmp_path, "eCT_Supplemental.dcm")
    stored = pydicom.dcmread(data_file("eCT_Supplemental.dcm")).pixel_array
    for ref in series.slices:
        values = read_slice(series, ref)
        assert ref.frame is not None
        np.testing.assert_array_equal(values, stored[ref.frame].astype(np.float64) - 1024.0)
        assert values.min() == -1024.0  # air, from (0028,9145) in the shared groups


def test_classic_multiframe_reads_each_frame(tmp_path: Path) -> None:
    series = series_of(tmp_path, "emri_small.dcm")
    stored = pydicom.dcmread(data_file("emri_small.dcm")).pixel_array
    assert len(series.slices) == 10
    for ref in series.slices:
        assert ref.frame is not None
        np.testing.assert_array_equal(read_slice(series, ref), stored[ref.frame])


def test_rle_multiframe_equals_uncompressed(tmp_path: Path) -> None:
    rle = series_of(tmp_path / "rle", "rtdose_rle.dcm")
    plain = series_of(tmp_path / "plain", "rtdose.dcm")
    assert len(rle.slices) == len(plain.slices) == 15
    for a, b in zip(read_all(rle), read_all(plain), strict=True):
        np.testing.assert_array_equal(a, b)


def test_deflated_and_bare_datasets(tmp_path: Path) -> None:
    (deflated,) = read_all(series_of(tmp_path / "dfl", "image_dfl.dcm"))
    np.testing.assert_array_equal(deflated, reference("image_dfl.dcm"))
    (bare,) = read_all(series_of(tmp_path / "bare", "no_meta.dcm"))
    np.testing.assert_array_equal(bare, reference("CT_small.dcm"))


@pytest.mark.parametrize("name", ["examples_rgb_color.dcm", "examples_palette.dcm"])
def test_colour_dicom_is_refused(tmp_path: Path, name: str) -> None:
    series = series_of(tmp_path, name)
    with pytest.raises(SliceReadError, match="colour image"):
        read_slice(series, series.slices[0])


def test_truncated_pixel_data(tmp_path: Path) -> None:
    data = data_file("693_UNCI.dcm").read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[: len(data) - 100_001])
    shutil.copy(data_file("MR_truncated.dcm"), tmp_path / "mr.dcm")
    found = discover(tmp_path)
    assert {f.status for f in found.files} == {"pending"}
    for series in found.series:
        with pytest.raises(SliceReadError, match="could not decode"):
            read_slice(series, series.slices[0])


def test_file_changed_after_discovery(tmp_path: Path) -> None:
    series = series_of(tmp_path, "CT_small.dcm")
    ref = series.slices[0]
    ref.path.unlink()
    with pytest.raises(SliceReadError):
        read_slice(series, ref)
    os.mkfifo(ref.path)  # never opened for blocking read
    with pytest.raises(SliceReadError, match="not a regular file"):
        read_slice(series, ref)


def test_wrong_size_and_unknown_kind(tmp_path: Path) -> None:
    series = series_of(tmp_path, "CT_small.dcm")
    series.rows = 100
    with pytest.raises(SliceReadError, match="128x128 pixels, the series is 100x128"):
        read_slice(series, series.slices[0])
    series.kind = "video"  # type: ignore[assignment]
    with pytest.raises(SliceReadError, match="unknown series kind"):
        read_slice(series, series.slices[0])


# --------------------------------------------------------------------------- images, .npy


def test_png_8_and_16_bit_and_colour(tmp_path: Path) -> None:
    eight = np.arange(12 * 10, dtype=np.uint8).reshape(12, 10)
    sixteen = (np.arange(12 * 10, dtype=np.uint16) * 500).reshape(12, 10)
    colour = np.zeros((12, 10, 3), np.uint8)
    colour[..., 0] = 255
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "c").mkdir()
    Image.fromarray(eight).save(tmp_path / "a" / "s.png")
    Image.fromarray(sixteen).save(tmp_path / "b" / "s.png")
    Image.fromarray(colour).save(tmp_path / "c" / "s.png")
    found = {s.key: s for s in discover(tmp_path).series}
    got = {key: read_slice(s, s.slices[0]) for key, s in found.items()}
    np.testing.assert_allclose(got["image:a"], eight / 255.0, rtol=1e-6)
    np.testing.assert_allclose(got["image:b"], sixteen / 65535.0, rtol=1e-6)
    np.testing.assert_allclose(got["image:c"], np.full((12, 10), 76 / 255.0), rtol=1e-6)
    assert all(v.dtype == np.float32 and 0 <= v.min() <= v.max() <= 1 for v in got.values())


def test_truncated_png(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (64, 64), dtype=np.uint8)).save(tmp_path / "s.png")
    data = (tmp_path / "s.png").read_bytes()
    (tmp_path / "s.png").write_bytes(data[: len(data) // 2])
    found = discover(tmp_path)
    series = found.series[0]
    with pytest.raises(SliceReadError):
        read_slice(series, series.slices[0])


def test_npy_values_as_stored(tmp_path: Path) -> None:
    volume = np.random.default_rng(2).normal(size=(3, 5, 4)) * 1000
    np.save(tmp_path / "vol.npy", volume)
    np.save(tmp_path / "fortran.npy", np.asfortranarray(volume))
    (tmp_path / "s").mkdir()
    np.save(tmp_path / "s" / "int.npy", np.arange(20, dtype=np.int32).reshape(5, 4) - 7)
    found = {s.key: s for s in discover(tmp_path).series}
    for key in ("npy:vol.npy", "npy:fortran.npy"):
        series = found[key]
        for ref in series.slices:
            assert ref.frame is not None
            np.testing.assert_array_equal(
                read_slice(series, ref), volume[ref.frame].astype(np.float32)
            )
    ints = found["npy:s"]
    np.testing.assert_array_equal(read_slice(ints, ints.slices[0]), np.arange(20).reshape(5, 4) - 7)


def test_npy_non_finite_and_truncated_after_discovery(tmp_path: Path) -> None:
    bad = np.zeros((4, 4), np.float32)
    bad[1, 2] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    series = discover(tmp_path).series[0]
    with pytest.raises(SliceReadError, match="non-finite"):
        read_slice(series, series.slices[0])
    data = (tmp_path / "nan.npy").read_bytes()
    (tmp_path / "nan.npy").write_bytes(data[:-8])
    with pytest.raises(SliceReadError, match="truncated"):
        read_slice(series, series.slices[0])


def test_read_slice_by_hand_made_ref(tmp_path: Path) -> None:
    """A SliceRef made by hand: rescale comes from the ref, not from the file."""
    shutil.copy(data_file("CT_small.dcm"), tmp_path / "ct.dcm")
    series = Series(key="k", kind="dicom", rows=128, columns=128)
    ref = SliceRef(tmp_path / "ct.dcm", rescale_slope=2.0, rescale_intercept=5.0)
    stored = pydicom.dcmread(data_file("CT_small.dcm")).pixel_array
    np.testing.assert_array_equal(read_slice(series, ref), stored * 2.0 + 5.0)


# --------------------------------------------------------------------------- fuzz

FUZZ_SOURCES = [
    "MR_small.dcm",
    "MR_small_RLE.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "MR_small_jp2klossless.dcm",
    "CT_small.dcm",
    "no_meta.dcm",
    "emri_small.dcm",
]
_SOURCE_BYTES = {name: data_file(name).read_bytes() for name in FUZZ_SOURCES}

mutation = st.tuples(
    st.sampled_from(["flip", "insert", "delete", "truncate", "overwrite"]),
    st.one_of(st.integers(0, 1500), st.floats(0, 1, exclude_max=True)),  # header or anywhere
    st.binary(min_size=1, max_size=16),
)


def mutate(data: bytes, mutations: list[tuple[str, int | float, bytes]]) -> bytes:
    buf = bytearray(data)
    for op, where, payload in mutations:
        if not buf:
            break
        at = where if isinstance(where, int) else int(where * len(buf))
        at = min(at, len(buf) - 1)
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


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    source=st.sampled_from(FUZZ_SOURCES),
    mutations=st.lists(mutation, min_size=1, max_size=4),
    name=st.sampled_from(["m.dcm", "m.bin", "m"]),
)
def test_fuzz_mutated_dicom_never_escapes(
    source: str, mutations: list[tuple[str, int | float, bytes]], name: str
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(mutate(_SOURCE_BYTES[source], mutations))
        found = discover(Path(folder))
        (rec,) = found.files
        if rec.status != "pending":
            assert rec.status in ("error", "skipped") and rec.reason
            assert found.series == []
            return
        assert found.series
        for series in found.series:
            for ref in series.slices:
                try:
                    values = read_slice(series, ref)
                except SliceReadError as exc:
                    assert str(exc)
                    continue
                assert values.dtype == np.float32
                assert values.shape == (series.rows, series.columns)
                assert np.isfinite(values).all()
