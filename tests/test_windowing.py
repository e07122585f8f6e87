import numpy as np
import pytest

from btd_core.slices.windowing import modality_mismatch, to_model_range
from btd_core.study.records import Series, SliceRef
from tests.support.cards import make_card

CT_CARD = make_card()
MRI_CARD = make_card(modality="mri", patch_size=128, window_low=0.0, window_high=1.0)
REF = SliceRef(path=__import__("pathlib").Path("x.dcm"))


def series(kind="dicom", modality="CT"):
    return Series(key="s", kind=kind, modality=modality)


def test_ct_dicom_is_windowed_from_hounsfield_units():
    hu = np.array([[-1000.0, -700.0, 650.0, 2000.0, 3000.0]], np.float32)
    np.testing.assert_allclose(
        to_model_range(hu, series(), REF, CT_CARD.profile), [[0, 0, 0.5, 1, 1]], atol=1e-7
    )


def test_ct_npy_is_taken_as_hounsfield_units():
    hu = np.array([[650.0]], np.float32)
    assert to_model_range(hu, series("npy", ""), REF, CT_CARD.profile)[0, 0] == pytest.approx(0.5)


def test_images_are_already_in_unit_range():
    values = np.array([[0.0, 0.25, 1.0]], np.float32)
    np.testing.assert_array_equal(
        to_model_range(values, series("image", ""), REF, CT_CARD.profile), values
    )


def test_mr_uses_the_stored_window_then_percentiles():
    values = np.linspace(0, 1000, 101, dtype=np.float32)[None]
    ref = SliceRef(path=REF.path, window=(500.0, 200.0))
    out = to_model_range(values, series(modality="MR"), ref, MRI_CARD.profile)
    assert out.min() == 0 and out.max() == 1
    assert out[0, 50] == pytest.approx(0.5)
    assert out[0, 39] == 0 and out[0, 61] == 1
    out = to_model_range(values, series(modality="MR"), REF, MRI_CARD.profile)
    assert out[0, 0] == 0 and out[0, -1] == 1 and out[0, 50] == pytest.approx(0.5, abs=1e-3)


def test_mr_npy_in_unit_range_is_kept():
    values = np.array([[0.1, 0.9]], np.float32)
    np.testing.assert_array_equal(
        to_model_range(values, series("npy", ""), REF, MRI_CARD.profile), values
    )


@pytest.mark.parametrize(
    "kind, modality, card, fits",
    [
        ("dicom", "CT", CT_CARD, True),
        ("dicom", "MR", CT_CARD, False),
        ("dicom", "", CT_CARD, False),
        ("dicom", "MR", MRI_CARD, True),
        ("dicom", "CT", MRI_CARD, False),
        ("image", "", MRI_CARD, True),
        ("npy", "", CT_CARD, True),
    ],
)
def test_modality_must_fit_the_model(kind, modality, card, fits):
    reason = modality_mismatch(series(kind, modality), card.profile)
    assert (reason == "") is fits
    if not fits:
        assert card.modality.upper() in reason


@pytest.mark.parametrize(
    "pixels",
    [
        # a byte-mutated float32 slice spanning nearly float32's whole range (found by the fuzz run)
        np.array([[-2.345944e38, 3.3816519e38], [1.0, 2.0]], dtype=np.float32),
        # nearly constant at a huge magnitude: no 256 bins fit its range even in float64
        np.array([[1e300, 1e300 * (1 + 1e-15)], [1e300, 1e300]], dtype=np.float64),
    ],
)
def test_mr_ranges_of_hostile_values_are_finite_not_an_escaping_error(pixels: np.ndarray):
    from btd_core.slices.windowing import head_mask, mr_range, otsu_threshold

    assert np.isfinite(otsu_threshold(pixels))
    mask = head_mask(pixels)
    assert mask.shape == pixels.shape
    for method in ("slice-minmax", "slice-p0.5-99.5", "slice-head-p1-99.5"):
        unit = mr_range(pixels, method).apply(pixels)
        assert unit.dtype == np.float32 and np.isfinite(unit).all()
        assert unit.min() >= 0.0 and unit.max() <= 1.0
