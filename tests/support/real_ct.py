"""Real CT pixels for tests, from pydicom-data (no download)."""

from __future__ import annotations

import numpy as np


def real_ct_slice(name: str = "693_UNCI.dcm") -> np.ndarray:
    """A real 512 x 512 CT slice from pydicom-data, windowed to [0, 1] (CT profile)."""
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.pixels import apply_modality_lut

    from btd_core.slices.profiles import CT

    dataset = pydicom.dcmread(get_testdata_file(name))
    return CT.to_unit_range(apply_modality_lut(dataset.pixel_array, dataset))
