"""Real-looking patches for the export's parity check, from scans bundled with pydicom.

No download: ``CT_small.dcm`` (128 x 128 chest CT) and ``MR_small.dcm`` (64 x 64 MR)
ship inside the pydicom wheel.  The patches exercise the whole input range,
including pixels at the window's lower edge (air), where the clamp bites.
"""

from __future__ import annotations

import numpy as np
import pydicom
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_modality_lut

from btd_core.slices.profiles import ModalityProfile

_SOURCE = {"ct": "CT_small.dcm", "mri": "MR_small.dcm"}


def _windowed_slice(profile: ModalityProfile) -> np.ndarray:
    """The bundled slice of the profile's modality, windowed to [0, 1], float32."""
    dataset = pydicom.dcmread(get_testdata_file(_SOURCE[profile.name]))
    values = apply_modality_lut(dataset.pixel_array, dataset).astype(np.float32)
    if profile.name == "ct":
        return profile.to_unit_range(values)
    low, high = np.percentile(values, [1.0, 99.0])
    return np.clip((values - low) / max(high - low, 1e-6), 0.0, 1.0).astype(np.float32)


def parity_patches(profile: ModalityProfile) -> np.ndarray:
    """Six patches [6, 1, S, S] in [0, 1]: four corners, the centre and a transposed centre.

    The slice is resized (bicubic) so that its side is 1.5 S before cropping.  The CT
    corners hold air outside the body, windowed to exactly 0 (model input -1), where the
    clamp of the one-step reverse bites.  A patch of pure air is left out on purpose:
    on a constant input GroupNorm divides by sqrt(0 + 1e-5), which magnifies float
    rounding (relative score differences up to ~5e-5 between onnxruntime and PyTorch),
    and scanning skips such tiles anyway.
    """
    size = profile.patch_size
    image = _windowed_slice(profile)
    side = size * 3 // 2
    image = np.asarray(Image.fromarray(image).resize((side, side), Image.BICUBIC))
    image = np.clip(image, 0.0, 1.0)
    offsets = [(0, 0), (0, side - size), (side - size, 0), (side - size, side - size)]
    offsets.append(((side - size) // 2, (side - size) // 2))
    patches = [image[r : r + size, c : c + size] for r, c in offsets]
    patches.append(np.ascontiguousarray(patches[-1].T))
    return np.stack(patches)[:, None].astype(np.float32)
