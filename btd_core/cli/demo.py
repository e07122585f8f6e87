"""``btd demo``: audit a demo study with a demo model, both made offline on first use."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.text import Text

from btd_core.cli.args import add_provider_argument
from btd_core.errors import BtdError
from btd_core.exit_status import ExitStatus


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register ``btd demo``."""
    parser = commands.add_parser(
        "demo",
        help="audit a demo CT study with planted tampering (made offline on first use)",
        description="Build (first time: a few minutes on a CPU; then cached) a demo model "
        "trained briefly on real CT slices from pydicom-data and a demo study of real CT "
        "slices with three tampered slices, then audit it: in the terminal app, or with "
        "--headless like btd scan. The demo shows the tool, not the method's accuracy.",
    )
    parser.add_argument("--headless", action="store_true", help="no app: scan and print")
    parser.add_argument(
        "--out",
        type=Path,
        help="report folder of --headless (default: report/ in the demo files' folder, "
        "replaced on each run)",
    )
    parser.add_argument("--fresh", action="store_true", help="rebuild the demo model and study")
    add_provider_argument(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, console: Console) -> int:
    """Run ``btd demo``."""
    try:
        from btd_core.cli.demo_build import (
            DEMO_STEPS,
            PHASE_CACHED,
            PHASE_TRAINING,
            cache_dir,
            ensure_demo,
        )
    except ImportError as err:  # pragma: no cover - the train extra is missing
        console.print(Text(f"btd demo needs the train extra: pip install 'btd[train]' ({err})"))
        return ExitStatus.CANNOT_RUN
    console.print(Text(f"demo files: {cache_dir() / 'demo'}"))
    progress = Progress(
        TextColumn("training the demo model"), BarColumn(), MofNCompleteColumn(), console=console
    )
    task = progress.add_task("train", total=DEMO_STEPS)
    training = [False]

    def on_phase(phase: str) -> None:
        """Say each phase; the bar shows only while training."""
        if training[0]:
            progress.stop()
            training[0] = False
        if phase == PHASE_CACHED:
            console.print(Text("demo model and study found in the cache (--fresh rebuilds)"))
            return
        console.print(Text(phase + " ..."))
        if phase == PHASE_TRAINING:
            progress.start()
            training[0] = True

    try:
        files = ensure_demo(
            fresh=args.fresh,
            on_step=lambda p: progress.update(task, completed=p.step),
            on_wait=lambda message: console.print(Text(message, style="yellow")),
            on_phase=on_phase,
        )
    except BtdError as err:
        console.print(Text(f"btd demo: {err}", style="red"))
        return ExitStatus.CANNOT_RUN
    finally:
        if training[0]:
            progress.stop()
    if not args.headless:
        launched = _launch_app(files, args, console)
        if launched is not None:
            return launched
    from btd_core.audit.scan_config import ScanConfig
    from btd_core.audit.study_audit import audit_study
    from btd_core.cli.scan import print_audit_summary

    out = args.out or cache_dir() / "demo" / "report"
    with console.status("scoring the demo study ..."):
        result = audit_study(files.study, files.model, out, ScanConfig(provider=args.provider))
    print_audit_summary(console, result, top=10)
    _print_truth(console, files, result)
    return ExitStatus.OK


def planted_edits(files) -> list[tuple[str, str]]:
    """(relative path in the study, what was done) of each planted tampering."""
    planted = []
    for truth in files.truth:
        series = truth.name.removesuffix("_truth.csv")
        with truth.open(newline="") as handle:
            for row in csv.DictReader(handle):
                what = f"{row['method']} {row['kind']} at x={row['x']}, y={row['y']}"
                planted.append((f"{series}/{row['file']}", what))
    return planted


def _print_truth(console: Console, files, result) -> None:
    """Where each planted tampering ended up in the ranking."""
    rank_of = {f.file.relpath: f.rank for f in result.findings}
    for relpath, what in planted_edits(files):
        rank = rank_of.get(relpath, "-")
        console.print(
            Text(f"planted {what} in {relpath}: rank {rank} of {len(result.findings)}"),
            soft_wrap=True,
        )


def _launch_app(files, args: argparse.Namespace, console: Console) -> int | None:
    """Open the terminal app on the demo study; ``None`` when the app is not available."""
    try:
        from btd_tui.app import create_app
    except ImportError:
        console.print(Text("the terminal app is not available; scanning headless"))
        return None
    from btd_core.audit.scan_config import ScanConfig
    from btd_tui.state import PlantedEdit

    planted = [PlantedEdit(relpath, what) for relpath, what in planted_edits(files)]
    create_app(files.study, files.model, ScanConfig(provider=args.provider), planted=planted).run()
    return ExitStatus.OK
