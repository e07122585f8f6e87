"""``btd scan`` on a long 512 x 512 CT series: wall time, slices/s, peak memory, body-mask share.

The series is built from a real CT slice (pydicom-data's 693_UNCI.dcm, head CT) with
new UIDs and positions.  Each configuration runs the real ``btd scan`` command in its
own process; peak memory is that process's maximum resident set size.  Side by side:
the default stride (S/2, tiles overlap by half), stride S (no overlap) and the paper's
one patch per slice; then N and 4N slices in patch mode (and tiled with ``--full``) to
show that memory stays flat as the study grows.  Needs an ONNX scorer
(``--model``) or the train extra (a random-weight CT scorer is exported).

``--study-npy V.npy`` scans that volume instead (e.g. lung1's 48 chest slices in HU,
where the body mask's lungs matter), and ``--baseline-tree DIR`` runs every
configuration a second time, side by side in the same run, with the btd code of
``DIR`` (a ``git worktree`` of an earlier commit): what a change costs.

    python benchmarks/bench_scan.py --slices 300          # the issue's measurement
    python benchmarks/bench_scan.py --slices 30           # a few minutes on 2 CPU cores
    git worktree add /tmp/old 219c62c && python benchmarks/bench_scan.py \
        --study-npy lung1.npy --model m.onnx --modes default --baseline-tree /tmp/old
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.study_builder import write_series

BTD = [sys.executable, "-m", "btd_core.cli.main"]


def random_scorer(folder: Path) -> Path:
    """Export a random-weight CT scorer (speed and memory do not depend on the weights)."""
    import torch

    from btd_core.model.diffusion import build_diffusion
    from export.onnx_export import export_scorer

    torch.manual_seed(0)
    checkpoint = folder / "random_ct.pt"
    torch.save({"model": build_diffusion(96).state_dict(), "step": 0}, checkpoint)
    return export_scorer(checkpoint, folder / "random_ct.onnx", modality="ct").path


def run_scan(
    study: Path,
    model: Path,
    out: Path,
    mode: str,
    provider: str = "cpu",
    extra: list[str] | None = None,
    tree: Path | None = None,
) -> dict[str, float]:
    """Run ``btd scan`` in a child process; return its wall time, peak RSS and counts.

    ``mode``: ``"default"`` (stride S/2), ``"stride96"`` (no overlap) or ``"patch"``
    (the paper's one patch per slice, at the slice centre).  ``tree``: run the btd code
    of that folder instead of this one (``PYTHONPATH``).
    """
    command = [*BTD, "scan", str(study), "--model", str(model), "--out", str(out)]
    command += ["--provider", provider, "--overlays", "5", "--top", "0", *(extra or [])]
    if mode == "stride96":
        command += ["--stride", "96"]
    elif mode == "patch":
        command += ["--patch-at", "256", "256"]
    rss_file = out.with_suffix(".rss")
    timer = shutil.which("time") and Path("/usr/bin/time")
    if timer and timer.exists():  # GNU time: this child's own peak, in KiB
        command = [str(timer), "-f", "%M", "-o", str(rss_file), *command]
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    start = time.perf_counter()
    # from the report's parent, never the repository: `python -m` puts the working
    # directory first on sys.path, ahead of PYTHONPATH
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=out.parent)
    wall = time.perf_counter() - start
    if done.returncode not in (0, 1) or not (out / "report.json").exists():
        raise RuntimeError(f"btd scan failed ({done.returncode}): {done.stdout}{done.stderr}")
    if rss_file.exists():
        peak = int(rss_file.read_text().split()[-1])
    else:  # largest child so far: an upper bound
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    settings = json.loads((out / "report.json").read_text())["settings"]
    tiles = settings["tiles_scored"] + settings["tiles_skipped_by_body_mask"]
    return {
        "wall_s": wall,
        "peak_mib": peak / 1024,
        "slices": settings["slices_done"],
        "slices_per_s": settings["slices_done"] / wall,
        "tiles_scored": settings["tiles_scored"],
        "skipped_share": settings["tiles_skipped_by_body_mask"] / max(tiles, 1),
        "mode": mode + (" " + " ".join(extra) if extra else "") + (" (baseline)" if tree else ""),
        "model": model.name,
        "provider": json.loads((out / "report.json").read_text())["provider"]["in_use"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300, help="slices in the series")
    parser.add_argument(
        "--model", type=Path, nargs="+", help="ONNX scorer(s) (default: random CT weights)"
    )
    parser.add_argument("--provider", choices=("cpu", "cuda", "auto"), default="cpu")
    parser.add_argument(
        "--source",
        default="693_UNCI.dcm",
        help="the real slice the series is built from: a pydicom-data name or a DICOM path",
    )
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=("default", "stride96", "patch"),
        default=["default", "stride96", "patch"],
    )
    parser.add_argument(
        "--extra",
        action="append",
        default=[],
        help="also run the first mode and the last model with these btd scan flags "
        "(quoted, e.g. '--workers 1')",
    )
    parser.add_argument("--no-growth", action="store_true", help="skip the 4N-slice runs")
    parser.add_argument("--full", action="store_true", help="also tile 4N slices (slow on a CPU)")
    parser.add_argument("--study-npy", type=Path, help="scan this .npy volume instead")
    parser.add_argument(
        "--baseline-tree", type=Path, help="also run each configuration with the btd code here"
    )
    parser.add_argument(
        "--baseline-model",
        type=Path,
        help="the baseline's copy of the (last) model, with that code's own calibration sidecar",
    )
    args = parser.parse_args()
    trees = [None] if args.baseline_tree is None else [None, args.baseline_tree]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        models = args.model or [random_scorer(folder)]
        rows = []
        counts = (
            (args.slices,) if args.no_growth or args.study_npy else (args.slices, 4 * args.slices)
        )
        for count in counts:
            study = folder / f"study_{count}"
            if args.study_npy:
                study.mkdir()
                shutil.copyfile(args.study_npy, study / args.study_npy.name)
            else:
                write_series(study, args.source, count, spacing_mm=1.0)
            if count == args.slices:
                runs = [(model, mode, []) for model in models for mode in args.modes]
                runs += [(models[-1], args.modes[0], extra.split()) for extra in args.extra]
            else:
                modes = ["patch", "stride96"] if args.full else ["patch"]
                runs = [(models[0], mode, []) for mode in modes]
            runs = [
                (args.baseline_model or model, mode, extra, tree)
                if tree is not None
                else (model, mode, extra, tree)
                for model, mode, extra in runs
                for tree in trees
            ]
            for number, (model, mode, extra, tree) in enumerate(runs):
                out = folder / f"report_{count}_{number}"
                try:
                    result = run_scan(study, model, out, mode, args.provider, extra, tree)
                except RuntimeError as err:  # report it, go on with the other runs
                    print(json.dumps({"error": str(err)[-600:], "mode": mode, "extra": extra}))
                    continue
                rows.append(result)
                print(json.dumps(result), flush=True)
                shutil.rmtree(out)
            shutil.rmtree(study)
    print()
    print(
        "| slices | model | provider | mode | wall s | slices/s | tiles scored "
        "| body mask skipped | peak RSS MiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['slices']} | {r['model']} | {r['provider']} | {r['mode']} | {r['wall_s']:.1f} "
            f"| {r['slices_per_s']:.3f} | {r['tiles_scored']} | {100 * r['skipped_share']:.0f} % "
            f"| {r['peak_mib']:.0f} |"
        )


if __name__ == "__main__":
    main()
