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


def shifted_hu_series(count: int, planted: int | None = None) -> np.ndarray:
    """``count`` slices of a real CT slice (pydicom-data's 693_UNCI.dcm, HU), each shifted
    one more pixel, so neighbours differ as anatomy does; uniform noise in ``planted``."""
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.pixels import apply_modality_lut

    dataset = pydicom.dcmread(get_testdata_file("693_UNCI.dcm"))
    hu = apply_modality_lut(dataset.pixel_array, dataset).astype(np.float32)
    slices = np.stack([np.roll(hu, shift, axis=1) for shift in range(count)])
    if planted is not None:
        rng = np.random.default_rng(3)
        slices[planted, 240:280, 200:240] = rng.uniform(-700, 2000, (40, 40))
    return slices
