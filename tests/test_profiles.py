import numpy as np
import pytest

from btd_core.slices.profiles import CT, MRI, profile_for


def test_ct_window_maps_hu_linearly_to_unit_range():
    hu = np.array([-2000.0, -700.0, 650.0, 2000.0, 3000.0])
    np.testing.assert_allclose(CT.to_unit_range(hu), [0.0, 0.0, 0.5, 1.0, 1.0], atol=1e-7)
    assert CT.to_unit_range(hu).dtype == np.float32


def test_ct_window_is_the_papers_formula():
    hu = np.linspace(-700, 2000, 11)
    np.testing.assert_allclose(CT.to_unit_range(hu), (hu + 700) / 2700, rtol=1e-6)


def test_mri_is_identity_on_unit_range_and_clips():
    values = np.array([-0.5, 0.0, 0.25, 1.0, 1.5])
    np.testing.assert_allclose(MRI.to_unit_range(values), [0.0, 0.0, 0.25, 1.0, 1.0])


def test_nan_becomes_zero():
    assert CT.to_unit_range(np.array([np.nan]))[0] == 0.0


def test_profile_constants():
    assert (CT.patch_size, CT.window_low, CT.window_high, CT.unit) == (96, -700.0, 2000.0, "HU")
    assert (MRI.patch_size, MRI.window_low, MRI.window_high) == (128, 0.0, 1.0)


@pytest.mark.parametrize("name, expected", [("CT", CT), ("mri", MRI), ("MR", MRI), (" ct ", CT)])
def test_profile_lookup(name, expected):
    assert profile_for(name) is expected


def test_unknown_modality_names_the_known_ones():
    with pytest.raises(ValueError, match="ct, mri"):
        profile_for("pet")
