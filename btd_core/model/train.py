"""Training the method's model on genuine scans (torch world), the upstream way.

The loop is upstream BTD's (denoising-diffusion-pytorch 1.8.3's ``Trainer``): Adam,
gradient accumulation, grad-norm clipping, an EMA copy of the weights, and
checkpoints in the same layout (``step``, ``model``, ``opt``, ``ema``, ``scaler``,
``version``), plus this project's ``btd`` entry (modality, crop size, the whole
config).  Devices, several GPUs or nodes, and mixed precision come from accelerate:
run ``accelerate launch -m btd_core.cli.main train ...`` for more than one process.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, set_seed
from ema_pytorch import EMA
from torch.utils.data import DataLoader

from btd_core import __version__
from btd_core.model.diffusion import GaussianDiffusion, build_diffusion, library_version
from btd_core.model.train_config import TrainConfig
from btd_core.model.train_data import CropDataset, find_training_slices
from btd_core.slices.profiles import profile_for

LAST = "model-last.pt"


@dataclass(frozen=True)
class TrainProgress:
    """Posted after every optimiser step (main process only)."""

    step: int
    total: int
    loss: float
    steps_per_second: float


@dataclass(frozen=True)
class TrainResult:
    """What a run ended with."""

    out_dir: Path
    checkpoint: Path
    start_step: int
    step: int
    losses: list[float]
    slices: int
    left_out: list[str]
    stopped: bool


def train(
    config: TrainConfig,
    *,
    resume: bool = True,
    on_progress: Callable[[TrainProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train (or resume training) as ``config`` says; return where the last checkpoint is.

    With ``resume`` (default) and a ``model-last.pt`` in ``config.out_dir``, the
    weights, optimiser state, EMA and step count come from it and training goes on
    to ``config.steps``.  ``should_stop`` is polled after every step; a stop writes
    the last checkpoint first.
    """
    config.validate()
    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config.save(out_dir / "config.toml")
    set_seed(config.seed)
    accelerator = Accelerator(
        mixed_precision=config.mixed_precision,
        dataloader_config=DataLoaderConfiguration(split_batches=True),
    )
    profile = profile_for(config.modality)
    found = find_training_slices(Path(config.data_dir), profile)
    diffusion = build_diffusion(config.crop_size)
    optimiser = torch.optim.Adam(
        diffusion.parameters(), lr=config.learning_rate, betas=tuple(config.adam_betas)
    )
    ema = EMA(diffusion, beta=config.ema_decay, update_every=config.ema_update_every)
    ema.to(accelerator.device)
    start = _resume(out_dir / LAST, diffusion, optimiser, ema) if resume else 0
    dataset = CropDataset(
        found,
        profile,
        config.crop_size,
        length=max(config.steps - start, 1) * config.batch_size * config.grad_accumulation,
        hflip=config.hflip,
        seed=config.seed * 1_000_003 + start,
    )
    loader = DataLoader(
        dataset, batch_size=config.batch_size, num_workers=config.workers, drop_last=True
    )
    objective: torch.nn.Module = diffusion
    if config.max_timestep:
        objective = LowNoiseObjective(diffusion, config.max_timestep)
    model, optimiser, loader = accelerator.prepare(objective, optimiser, loader)
    batches = _cycle(loader)
    losses: list[float] = []
    step, stopped, began = start, False, time.perf_counter()
    while step < config.steps and not stopped:
        loss = _one_step(accelerator, model, optimiser, batches, config)
        step += 1
        losses.append(loss)
        if accelerator.is_main_process:
            ema.update()
            if on_progress is not None:
                rate = (step - start) / max(time.perf_counter() - began, 1e-9)
                on_progress(TrainProgress(step, config.steps, loss, rate))
        stopped = bool(should_stop and should_stop())
        if step % config.save_every == 0 or step == config.steps or stopped:
            _save(accelerator, model, optimiser, ema, step, config, out_dir, len(found.slices))
    accelerator.wait_for_everyone()
    if step == start:  # nothing to do: make sure a last checkpoint exists
        _save(accelerator, model, optimiser, ema, step, config, out_dir, len(found.slices))
    return TrainResult(
        out_dir=out_dir,
        checkpoint=out_dir / LAST,
        start_step=start,
        step=step,
        losses=losses,
        slices=len(found.slices),
        left_out=found.left_out,
        stopped=stopped,
    )


class LowNoiseObjective(torch.nn.Module):
    """The library's training loss with the noise level t drawn from [0, ``max_timestep``)
    only (``TrainConfig.max_timestep``); checkpoints hold the wrapped diffusion's weights."""

    def __init__(self, diffusion: GaussianDiffusion, max_timestep: int) -> None:
        super().__init__()
        self.diffusion = diffusion
        self.max_timestep = max_timestep

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Mean loss of ``images`` [B, C, S, S] in [0, 1] at random t < max_timestep."""
        t = torch.randint(0, self.max_timestep, (images.shape[0],), device=images.device)
        return self.diffusion.p_losses(self.diffusion.normalize(images), t)


def _diffusion_of(module: torch.nn.Module) -> torch.nn.Module:
    return module.diffusion if isinstance(module, LowNoiseObjective) else module


def _cycle(loader: DataLoader) -> Iterator[torch.Tensor]:
    while True:
        yield from loader


def _one_step(
    accelerator: Accelerator,
    model: torch.nn.Module,
    optimiser: torch.optim.Optimizer,
    batches: Iterator[torch.Tensor],
    config: TrainConfig,
) -> float:
    """Accumulate ``grad_accumulation`` batches, clip, step; return the step's loss."""
    total = 0.0
    for _ in range(config.grad_accumulation):
        data = next(batches).to(accelerator.device)
        with accelerator.autocast():
            loss = model(data) / config.grad_accumulation
        total += loss.item()
        accelerator.backward(loss)
    accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
    optimiser.step()
    optimiser.zero_grad()
    if not math.isfinite(total):
        raise FloatingPointError("the training loss is not finite; lower the learning rate")
    return total


def _resume(path: Path, diffusion: GaussianDiffusion, optimiser, ema: EMA) -> int:
    """Load ``model-last.pt`` (weights-only) into the run; return its step, or 0 if none."""
    if not path.exists():
        return 0
    data = torch.load(path, map_location="cpu", weights_only=True)
    diffusion.load_state_dict(data["model"])
    optimiser.load_state_dict(data["opt"])
    ema.load_state_dict(data["ema"])
    return int(data["step"])


def checkpoint_payload(
    accelerator: Accelerator,
    model: torch.nn.Module,
    optimiser: torch.optim.Optimizer,
    ema: EMA,
    step: int,
    config: TrainConfig,
    slices: int,
) -> dict[str, Any]:
    """The upstream checkpoint layout, plus this project's ``btd`` entry."""
    scaler = accelerator.scaler
    return {
        "step": step,
        "model": _diffusion_of(accelerator.unwrap_model(model)).state_dict(),
        "opt": optimiser.state_dict(),
        "ema": ema.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "version": library_version(),
        "btd": {
            "modality": config.modality,
            "image_size": config.crop_size,
            "btd_version": __version__,
            "training_slices": slices,
            "description": config.description,
            "config": dataclasses.asdict(config),
        },
    }


def _save(
    accelerator: Accelerator,
    model: torch.nn.Module,
    optimiser: torch.optim.Optimizer,
    ema: EMA,
    step: int,
    config: TrainConfig,
    out_dir: Path,
    slices: int,
) -> None:
    if not accelerator.is_local_main_process:
        return
    payload = checkpoint_payload(accelerator, model, optimiser, ema, step, config, slices)
    partial = out_dir / f".{LAST}.partial"
    torch.save(payload, partial)
    if step % config.save_every == 0:
        milestone = out_dir / f"model-{step // config.save_every}.pt"
        milestone.write_bytes(partial.read_bytes())
    partial.replace(out_dir / LAST)
