"""``btd tamper``: a labelled test set made from a team's own genuine scans."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.text import Text

from btd_core.cli.args import positive_int
from btd_core.safe_text import printable


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register ``btd tamper``."""
    parser = commands.add_parser(
        "tamper",
        help="make a labelled test set (injection / removal) from genuine scans",
        description="Tamper genuine slices under DATA_DIR by copy-move with blended edges and/or "
        "by inpainting with the method's own diffusion model (--checkpoint), injecting or "
        "removing a round region at random body locations (or --at X Y). Writes tampered and "
        "genuine .npy slices, masks and tamper.csv (path, x, y, type, set, method, kind, source, "
        "frame) into --out; evaluate with: btd eval --model M.onnx --csv OUT/tamper.csv "
        "--label tampered=tampered --label genuine=genuine",
    )
    parser.add_argument("data_dir", type=Path, metavar="DATA_DIR")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--modality", choices=("ct", "mri"), default="ct")
    parser.add_argument("--per-set", type=positive_int, default=10, help="tampered slices per set")
    parser.add_argument(
        "--methods", nargs="+", choices=("copy-move", "diffusion"), default=["copy-move"]
    )
    parser.add_argument(
        "--kinds", nargs="+", choices=("injection", "removal"), default=["injection", "removal"]
    )
    parser.add_argument("--checkpoint", type=Path, help="model .pt for --methods diffusion")
    parser.add_argument("--at", nargs=2, type=int, metavar=("X", "Y"), help="fixed location")
    parser.add_argument("--radius", nargs=2, type=int, default=[8, 14], metavar=("MIN", "MAX"))
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, console: Console) -> int:
    """Run ``btd tamper``; 0 done, 1 some slices failed, 2 cannot run."""
    from btd_core.slices.profiles import profile_for
    from btd_core.tamper.labelled_set import make_test_set

    if not args.data_dir.is_dir():
        console.print(Text(f"btd tamper: {args.data_dir} is not a folder", style="red"))
        return 2
    try:
        result = make_test_set(
            args.data_dir,
            args.out,
            profile_for(args.modality),
            per_set=args.per_set,
            methods=args.methods,
            kinds=args.kinds,
            radius=tuple(args.radius),
            at=tuple(args.at) if args.at else None,
            checkpoint=args.checkpoint,
            seed=args.seed,
        )
    except (ValueError, ImportError) as err:
        console.print(Text(f"btd tamper: {err}", style="red"), soft_wrap=True)
        return 2
    for line in result.failures:
        console.print(Text(f"failed: {printable(line)}", style="yellow"), soft_wrap=True)
    sets = ", ".join(f"{name} {n}" for name, n in result.sets.items())
    console.print(Text(f"wrote {result.rows} rows ({sets}) to {result.csv_path}"), soft_wrap=True)
    return 1 if result.failures else 0
