"""``btd tamper``: a labelled test set made from a team's own genuine scans."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.text import Text

from btd_core.cli.args import add_overwrite_argument, positive_int
from btd_core.cli.failures import cannot_run
from btd_core.errors import BtdError
from btd_core.exit_status import ExitStatus
from btd_core.safe_text import printable

if TYPE_CHECKING:
    from btd_core.slices.profiles import ModalityProfile
    from btd_core.tamper.labelled_set import Tamperer


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register ``btd tamper``."""
    parser = commands.add_parser(
        "tamper",
        help="make a labelled test set (injection / removal) from genuine scans",
        description="Tamper genuine slices under DATA_DIR by copy-move with blended edges and/or "
        "by inpainting with the method's own diffusion model (--checkpoint), injecting or "
        "removing a round region at random places in the body or, with --place lung, in the "
        "lungs (or --at X Y); with --depth N each edit is a ball over N consecutive slices, as "
        "CT-GAN tampers a volume. Writes tampered and genuine .npy slices, masks and tamper.csv "
        "(path, x, y, type, set, method, kind, source, frame, edit) into --out; evaluate with: "
        "btd eval --model M.onnx --csv OUT/tamper.csv "
        "--label tampered=tampered --label genuine=genuine",
    )
    parser.add_argument("data_dir", type=Path, metavar="DATA_DIR")
    parser.add_argument(
        "--out", type=Path, required=True, help="folder for the test set (outside DATA_DIR)"
    )
    add_overwrite_argument(parser)
    parser.add_argument("--modality", choices=("ct", "mri"), default="ct")
    parser.add_argument(
        "--per-set", type=positive_int, default=10, help="tampered slices per set (default: 10)"
    )
    parser.add_argument(
        "--methods", nargs="+", choices=("copy-move", "diffusion"), default=["copy-move"]
    )
    parser.add_argument(
        "--kinds", nargs="+", choices=("injection", "removal"), default=["injection", "removal"]
    )
    parser.add_argument("--checkpoint", type=Path, help="model .pt for --methods diffusion")
    parser.add_argument("--at", nargs=2, type=int, metavar=("X", "Y"), help="fixed location")
    parser.add_argument("--radius", nargs=2, type=int, default=[8, 14], metavar=("MIN", "MAX"))
    parser.add_argument(
        "--place",
        choices=("body", "lung"),
        default="body",
        help="where edits go: anywhere in the body, or in the lungs (CT: injections in "
        "aerated lung, removals of a vessel or nodule there, as CT-GAN attacks) (default: body)",
    )
    parser.add_argument(
        "--depth",
        type=positive_int,
        default=1,
        help="slices per edit, odd: 1 = one slice, 3 or more = a ball over that many "
        "consecutive slices of a series (default: 1)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, console: Console) -> int:
    """Run ``btd tamper``; 0 done, 1 some slices failed, 2 cannot run."""
    from btd_core.findings.output_folder import prepare_report_folder
    from btd_core.slices.profiles import profile_for
    from btd_core.tamper.labelled_set import make_test_set

    if not args.data_dir.is_dir():
        return cannot_run(console, "btd tamper", f"{args.data_dir} is not a folder")
    try:
        prepare_report_folder(
            args.out, args.data_dir, overwrite=args.overwrite, inputs_are="data folder"
        )
    except BtdError as err:
        return cannot_run(console, "btd tamper", err)
    profile = profile_for(args.modality)
    try:
        result = make_test_set(
            args.data_dir,
            args.out,
            profile,
            per_set=args.per_set,
            methods=args.methods,
            kinds=args.kinds,
            radius=tuple(args.radius),
            at=tuple(args.at) if args.at else None,
            tamperers=tamperers_for(args.methods, args.checkpoint, profile),
            seed=args.seed,
            place=args.place,
            depth=args.depth,
        )
    except (BtdError, ValueError, ImportError) as err:
        return cannot_run(console, "btd tamper", err)
    for line in result.failures:
        console.print(Text(f"failed: {printable(line)}", style="yellow"), soft_wrap=True)
    sets = ", ".join(f"{name} {n}" for name, n in result.sets.items())
    console.print(Text(f"wrote {result.rows} rows ({sets}) to {result.csv_path}"), soft_wrap=True)
    return ExitStatus.SOME_FAILED if result.failures else ExitStatus.OK


def tamperers_for(
    methods: Sequence[str], checkpoint: Path | None, profile: ModalityProfile
) -> dict[str, Tamperer]:
    """The functions applying ``methods``: copy-move, and diffusion inpainting with the
    model of ``checkpoint`` (needs the train extra).

    Raises
    ------
    ValueError
        An unknown method, or diffusion without a checkpoint.
    ImportError
        Diffusion without the train extra.
    """
    from btd_core.tamper.labelled_set import COPY_MOVE, METHODS

    tamperers = dict(COPY_MOVE)
    for method in methods:
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    if "diffusion" in methods:
        if checkpoint is None:
            raise ValueError("diffusion tampering needs --checkpoint (a .pt of the method's model)")
        from btd_core.model.inpainting import diffusion_tamperer

        tamperers["diffusion"] = diffusion_tamperer(checkpoint, profile)
    return tamperers
