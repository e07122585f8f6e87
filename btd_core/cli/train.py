"""``btd train``: train the method's model on genuine scans (needs the train extra)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.text import Text

from btd_core.exit_status import ExitStatus
from btd_core.safe_text import printable

_FLAGS = {
    "steps": ("--steps", int, "optimiser steps in all (upstream: 700000)"),
    "batch_size": ("--batch-size", int, "crops per forward pass (upstream: 64)"),
    "grad_accumulation": ("--grad-accumulation", int, "passes per step (upstream: 2)"),
    "learning_rate": ("--lr", float, "Adam learning rate (upstream: 8e-6)"),
    "ema_decay": ("--ema-decay", float, "EMA decay (upstream: 0.995)"),
    "save_every": ("--save-every", int, "steps between checkpoints (upstream: 20000)"),
    "patch_size": ("--patch-size", int, "crop side in px (default: the modality's S)"),
    "seed": ("--seed", int, "random seed"),
    "workers": ("--workers", int, "DataLoader worker processes"),
    "max_timestep": (
        "--max-t",
        int,
        "draw the noise level t from [0, N) only: the low-noise end that the t = 0 score "
        "uses (default: 0, all of the schedule's 1000 steps, as upstream)",
    ),
}


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register ``btd train``."""
    parser = commands.add_parser(
        "train",
        help="train the BTD model on genuine scans (upstream recipe; train extra)",
        description="Train the method's U-Net on genuine scans found under DATA_DIR (DICOM, "
        "PNG/JPEG/TIFF, .npy; the same discovery as btd scan) with upstream BTD's recipe as "
        "defaults. Checkpoints in the upstream layout and config.toml go to --out; an "
        "interrupted run resumes from --out/model-last.pt. Several GPUs or nodes: "
        "accelerate launch -m btd_core.cli.main train ...",
    )
    parser.add_argument("data_dir", type=Path, metavar="DATA_DIR")
    parser.add_argument(
        "--modality", choices=("ct", "mri"), help="modality of the scans (default: ct)"
    )
    parser.add_argument("--out", type=Path, help="run folder (default: runs/btd)")
    parser.add_argument("--config", type=Path, help="a config.toml to start from")
    for name, (flag, kind, text) in _FLAGS.items():
        parser.add_argument(flag, dest=name, type=kind, help=text)
    parser.add_argument("--no-hflip", action="store_true", help="no random horizontal flips")
    parser.add_argument("--mixed-precision", choices=("no", "fp16", "bf16"))
    parser.add_argument(
        "--no-resume", action="store_true", help="start afresh even if a run is there"
    )
    parser.set_defaults(run=run)


def config_from_args(args: argparse.Namespace):
    """Defaults < --config file < flags given on the command line."""
    from btd_core.model.train_config import TrainConfig

    config = TrainConfig.load(args.config) if args.config else TrainConfig()
    changes = {name: getattr(args, name) for name in _FLAGS if getattr(args, name) is not None}
    if args.modality:
        changes["modality"] = args.modality
    if args.mixed_precision:
        changes["mixed_precision"] = args.mixed_precision
    if args.no_hflip:
        changes["hflip"] = False
    if args.out:
        changes["out_dir"] = str(args.out)
    changes["data_dir"] = str(args.data_dir)
    return dataclasses.replace(config, **changes).validate()


def run(args: argparse.Namespace, console: Console) -> int:
    """Run ``btd train``; 0 on success, 2 when it cannot start."""
    try:
        from btd_core.model.train import train
    except ImportError as err:
        console.print(Text(f"btd train needs the train extra: pip install 'btd[train]' ({err})"))
        return ExitStatus.CANNOT_RUN
    try:
        config = config_from_args(args)
    except (ValueError, OSError) as err:
        console.print(Text(f"btd train: {err}", style="red"), soft_wrap=True)
        return ExitStatus.CANNOT_RUN
    if not args.data_dir.is_dir():
        console.print(Text(f"btd train: {args.data_dir} is not a folder", style="red"))
        return ExitStatus.CANNOT_RUN
    progress = Progress(
        TextColumn("training"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("steps  loss {task.fields[loss]}  {task.fields[rate]} steps/s"),
        TimeRemainingColumn(),
        console=console,
    )
    task = progress.add_task("train", total=config.steps, loss="-", rate="-")

    def on_progress(update) -> None:
        progress.update(
            task,
            completed=update.step,
            loss=f"{update.loss:.4f}",
            rate=f"{update.steps_per_second:.2f}",
        )

    try:
        with progress:
            result = train(config, resume=not args.no_resume, on_progress=on_progress)
    except ValueError as err:
        console.print(Text(f"btd train: {err}", style="red"), soft_wrap=True)
        return ExitStatus.CANNOT_RUN
    for line in result.left_out[:20]:
        console.print(Text(f"left out: {printable(line)}", style="yellow"), soft_wrap=True)
    console.print(
        Text(
            f"trained steps {result.start_step}..{result.step} on {result.slices} slices; "
            f"checkpoint {result.checkpoint}; config {result.out_dir / 'config.toml'}",
            style="bold",
        ),
        soft_wrap=True,
    )
    return ExitStatus.OK
