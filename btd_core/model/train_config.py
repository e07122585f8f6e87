"""The settings of one training run, with upstream BTD's recipe as defaults, kept as TOML.

Every run writes its ``config.toml`` next to its checkpoints, so a model can always
be traced back to the data and settings that made it.  Pure Python (no torch).
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from btd_core.slices.profiles import profile_for

MIXED_PRECISION = ("no", "fp16", "bf16")


@dataclass
class TrainConfig:
    """One training run (upstream: METHOD.md, "Training").

    Attributes
    ----------
    modality:
        ``"ct"`` or ``"mri"``: the window and, unless ``patch_size`` is set, the crop size.
    data_dir:
        Genuine scans (DICOM series, PNG/JPEG/TIFF, ``.npy``), found as ``btd scan`` finds them.
    out_dir:
        Where checkpoints (``model-<milestone>.pt``, ``model-last.pt``) and this config go.
    steps:
        Optimiser steps in all (upstream: 700,000).
    batch_size, grad_accumulation:
        Crops per forward pass and passes per step (upstream: 64 x 2).
    learning_rate:
        Adam learning rate (upstream: 8e-6).
    adam_betas:
        Adam (beta1, beta2) (upstream: (0.9, 0.99)).
    max_grad_norm:
        Gradient-norm clip (upstream: 1.0).
    ema_decay, ema_update_every:
        EMA of the weights (upstream: 0.995, every 10 steps).
    save_every:
        Steps between checkpoints (upstream: 20,000); a last one is always written.
    hflip:
        Random horizontal flips of the crops.
    patch_size:
        Crop side in pixels; 0 means the modality's S (96 CT, 128 MRI).  Smaller crops
        train faster (the U-Net is convolutional) but are not what upstream did.
    mixed_precision:
        ``"no"`` (upstream), ``"fp16"`` or ``"bf16"`` (through accelerate).
    seed:
        Seeds Python, numpy and torch.
    workers:
        DataLoader worker processes.
    description:
        Free text stored in the checkpoint and the exported model card: what the model was
        trained on and what it is (not) for.
    max_timestep:
        Draw the training noise level t from [0, max_timestep) instead of all the
        schedule's steps (0 = all, upstream).  The detector takes one step from t = 0, so
        the low-noise end is what it uses: ``benchmarks/bench_detection.py`` measured a
        model trained on [0, 100) far ahead of one trained on all 1,000 (``docs/detection.md``).
    """

    modality: str = "ct"
    data_dir: str = ""
    out_dir: str = "runs/btd"
    steps: int = 700_000
    batch_size: int = 64
    grad_accumulation: int = 2
    learning_rate: float = 8e-6
    adam_betas: list[float] = field(default_factory=lambda: [0.9, 0.99])
    max_grad_norm: float = 1.0
    ema_decay: float = 0.995
    ema_update_every: int = 10
    save_every: int = 20_000
    hflip: bool = True
    patch_size: int = 0
    mixed_precision: str = "no"
    seed: int = 0
    workers: int = 0
    description: str = ""
    max_timestep: int = 0

    @property
    def crop_size(self) -> int:
        """Crop side in pixels actually used."""
        return self.patch_size or profile_for(self.modality).patch_size

    def validate(self) -> TrainConfig:
        """Check ranges; return self.  Raises ValueError naming the setting."""
        profile_for(self.modality)
        if self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(f"mixed_precision must be one of {MIXED_PRECISION}")
        for name in ("steps", "batch_size", "grad_accumulation", "save_every", "ema_update_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.crop_size % 8:
            raise ValueError("patch_size must be a multiple of 8")
        if not 0 <= self.max_timestep <= 1000:
            raise ValueError("max_timestep must be in [0, 1000] (0: all of the schedule's steps)")
        if not self.learning_rate > 0 or not 0 < self.ema_decay < 1:
            raise ValueError("learning_rate must be > 0 and ema_decay in (0, 1)")
        return self

    def to_toml(self) -> str:
        """The config as TOML text (every field).

        ``tomli_w`` (the train extra) is imported here, not at the top: the defaults are read
        without it (``btd --help``'s test runs in the torch-free install, ``.[test]`` alone).
        """
        import tomli_w

        return tomli_w.dumps(dataclasses.asdict(self))

    def save(self, path: Path) -> Path:
        """Write :meth:`to_toml` to ``path``."""
        path.write_text(self.to_toml(), encoding="utf-8")
        return path

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a dict; unknown keys are an error (a typo must not pass silently)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training settings: {', '.join(unknown)}")
        return cls(**values).validate()

    @classmethod
    def load(cls, path: Path) -> TrainConfig:
        """Read a config written by :meth:`save` (or by hand)."""
        with path.open("rb") as handle:
            return cls.from_dict(tomllib.load(handle))
