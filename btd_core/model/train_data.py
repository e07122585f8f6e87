"""Training data: random S x S crops of genuine slices, windowed to [0, 1] (torch world).

The slices are found exactly as ``btd scan`` finds them (DICOM series, image and
``.npy`` stacks) and windowed by the modality profile.  Crops that are nearly all
air (the body mask of scanning) are drawn again, up to ten times.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from btd_core.slices.profiles import ModalityProfile
from btd_core.slices.tiling import BODY_FRACTION, BODY_LEVEL, crop_patch
from btd_core.slices.windowing import modality_mismatch, to_model_range
from btd_core.study.discovery import discover
from btd_core.study.pixels import SliceReadError, read_slice
from btd_core.study.records import Series

CACHE_SLICES = 256
"""Windowed slices kept in memory per worker (512 x 512 float32: 1 MiB each)."""


@dataclass(frozen=True)
class TrainingSlices:
    """The usable slices of a data folder, and what was left out with why."""

    slices: list[tuple[Series, int]]
    left_out: list[str]


def find_training_slices(data_dir: Path, profile: ModalityProfile) -> TrainingSlices:
    """Every slice under ``data_dir`` whose series fits ``profile``; reasons for the rest."""
    discovery = discover(data_dir, hash_files=False)
    slices: list[tuple[Series, int]] = []
    left_out = [
        f"{f.relpath}: {f.reason}" for f in discovery.files if f.status in ("error", "skipped")
    ]
    for series in discovery.series:
        reason = modality_mismatch(series, profile)
        if reason:
            left_out.append(f"series {series.key}: {reason}")
            continue
        slices.extend((series, i) for i in range(len(series.slices)))
    return TrainingSlices(slices=slices, left_out=left_out)


class CropDataset(Dataset):
    """``length`` random crops [1, S, S] float32 in [0, 1]; item i is the same for a seed.

    Parameters
    ----------
    slices:
        From :func:`find_training_slices`.
    profile:
        Windowing of the modality.
    crop_size:
        S in pixels.
    length:
        Items per epoch (crops are random, so any length works).
    hflip:
        Flip half of the crops left-right.
    seed:
        Base seed; item i uses ``(seed, i)``.
    """

    def __init__(
        self,
        slices: TrainingSlices,
        profile: ModalityProfile,
        crop_size: int,
        length: int,
        hflip: bool = True,
        seed: int = 0,
    ) -> None:
        if not slices.slices:
            raise ValueError("no usable slices to train on")
        self.slices = slices.slices
        self.profile = profile
        self.crop_size = crop_size
        self.length = length
        self.hflip = hflip
        self.seed = seed
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> torch.Tensor:
        rng = np.random.default_rng((self.seed, index))
        crop = None
        for _ in range(10):
            image = self._image(int(rng.integers(len(self.slices))))
            if image is None:
                continue
            crop = self._random_crop(image, rng)
            if (crop > BODY_LEVEL).mean() >= BODY_FRACTION:
                break
        if crop is None:
            crop = np.zeros((self.crop_size, self.crop_size), np.float32)
        if self.hflip and rng.random() < 0.5:
            crop = crop[:, ::-1]
        return torch.from_numpy(np.ascontiguousarray(crop)[None])

    def _random_crop(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        size = self.crop_size
        y = int(rng.integers(0, max(image.shape[0] - size, 0) + 1))
        x = int(rng.integers(0, max(image.shape[1] - size, 0) + 1))
        return crop_patch(image, y, x, size)

    def _image(self, position: int) -> np.ndarray | None:
        if position in self._cache:
            self._cache.move_to_end(position)
            return self._cache[position]
        series, index = self.slices[position]
        ref = series.slices[index]
        try:
            image = to_model_range(read_slice(series, ref), series, ref, self.profile)
        except SliceReadError:
            return None
        self._cache[position] = image
        if len(self._cache) > CACHE_SLICES:
            self._cache.popitem(last=False)
        return image
