"""``btd archive``: audit every study under a folder, resumable, here or on a Ray cluster."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.text import Text

from btd_core.cli.args import (
    add_engine_arguments,
    add_limit_arguments,
    add_model_argument,
    add_overlays_argument,
    add_provider_argument,
    add_score_arguments,
    add_stride_argument,
    positive_int,
    scan_config,
)
from btd_core.cli.failures import cannot_run
from btd_core.cli.interrupt import StopOnInterrupt
from btd_core.cli.progress import duration, progress_display
from btd_core.errors import BtdError
from btd_core.exit_status import ExitStatus


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register ``btd archive`` on the main parser's subcommands."""
    parser = commands.add_parser(
        "archive",
        help="audit every study under a folder (thousands, resumable; Ray optional)",
        description="Find every study under ROOT (DICOM grouped by Study Instance UID across "
        "folders; otherwise each folder --study-depth levels down is a study), scan each with "
        "the same engine and report as btd scan into OUT/studies/<study>/, and rank all "
        "studies in OUT/studies.csv and OUT/index.html (OUT/archive.json: provenance and "
        "hashes). A rerun into the same OUT resumes: studies done and unchanged are kept, the "
        "rest scanned. Nothing is written into ROOT. Exit status: 0 every study scanned and "
        "every file "
        "read, 1 some studies or files failed (see studies.csv), 2 the archive could not "
        "run, 130 stopped by Ctrl-C (rerun to resume).",
    )
    parser.add_argument("root", type=Path, metavar="ROOT")
    add_model_argument(parser)
    parser.add_argument(
        "--out", type=Path, required=True, help="archive output folder (outside ROOT)"
    )
    parser.add_argument(
        "--ray",
        metavar="local|auto|ADDRESS",
        help="run the units on Ray actors (needs the archive extra: pip install 'btd[archive]'): "
        "local = a Ray runtime started on this machine, auto = the running cluster "
        "(ray start --head), or the head's ADDRESS (host:port); default: worker processes "
        "on this machine, no Ray",
    )
    parser.add_argument(
        "--jobs",
        type=positive_int,
        help="units scanned at once, one scorer each (default: one per GPU, else one per "
        "CPU core; with --ray: one per cluster GPU, else per cluster CPU)",
    )
    parser.add_argument(
        "--study-depth",
        type=positive_int,
        default=1,
        help="folder levels below ROOT of a study folder (default: 1)",
    )
    parser.add_argument(
        "--max-attempts",
        type=positive_int,
        default=3,
        help="times one run hands a unit to a worker before recording it failed (a worker "
        "that dies costs its unit one) (default: 3)",
    )
    add_provider_argument(parser)
    add_stride_argument(parser)
    add_score_arguments(parser)
    add_overlays_argument(parser, "PNG overlays per study")
    parser.add_argument(
        "--no-phi",
        action="store_true",
        help="leave patient identifiers (name, ID, study date) out of every report",
    )
    add_engine_arguments(parser)
    add_limit_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, console: Console) -> int:
    """Run ``btd archive``; returns the exit status."""
    from btd_core.archive.driver import ArchiveProgress, run_archive
    from btd_core.archive.executor import Executor
    from btd_core.archive.unit_scan import WorkerConfig

    config = WorkerConfig(
        model=str(args.model.expanduser().resolve()),
        scan=scan_config(args),
        command_line=tuple(sys.argv),
        scratch=None,
    )
    display, update = progress_display(console, "archive", unit="units")

    def on_plan(units: int, todo: int) -> None:
        kept = units - todo
        line = f"archive: {units} studies found, {kept} done before, {todo} to scan"
        console.print(Text(line), soft_wrap=True, highlight=False)

    def on_progress(state: ArchiveProgress) -> None:
        rate = state.slices / state.elapsed_s if state.elapsed_s > 0 else 0.0
        note = f"{state.slices} slices, {rate:.3g} slices/s"
        if state.failed:
            note += f", {state.failed} failed"
        update(state.units_done, state.units_total, note)

    def make_executor(worker_config: WorkerConfig) -> Executor:
        if args.ray:
            from btd_core.archive.ray_exec import RayExecutor

            return RayExecutor(worker_config, args.ray, args.jobs)
        from btd_core.archive.local import LocalExecutor

        return LocalExecutor(worker_config, args.jobs)

    try:
        with StopOnInterrupt(console, "the archive") as interrupt, display:
            result = run_archive(
                args.root,
                args.out,
                config,
                make_executor,
                depth=args.study_depth,
                max_attempts=args.max_attempts,
                command_line=sys.argv,
                should_stop=interrupt.requested,
                on_progress=on_progress,
                on_plan=on_plan,
            )
    except BtdError as err:
        return cannot_run(console, "btd archive", err)
    counts = ", ".join(f"{n} {status}" for status, n in result.counts.items() if n)
    console.print(Text(f"studies: {counts or 'none found'}"), soft_wrap=True)
    console.print(
        Text(
            f"this run: {result.done_now} scanned, {result.kept} kept from earlier runs, "
            f"{result.failed_now} failed, {result.slices} slices in {duration(result.wall_s)}"
        ),
        soft_wrap=True,
    )
    console.print(Text(f"ranking: {result.out / 'studies.csv'}", style="bold"), soft_wrap=True)
    if result.cancelled:
        console.print(
            Text("stopped: rerun the same command to resume", style="yellow"), soft_wrap=True
        )
        return ExitStatus.CANCELLED
    clean = result.counts.get("scored", 0) == result.units
    return ExitStatus.OK if clean else ExitStatus.SOME_FAILED
