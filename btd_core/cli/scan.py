"""``btd scan``: audit a study directory headless, with a progress bar and a ranked table."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table
from rich.text import Text

from btd_core.cli.args import (
    add_engine_arguments,
    add_limit_arguments,
    add_model_argument,
    add_overlays_argument,
    add_overwrite_argument,
    add_provider_argument,
    add_score_arguments,
    add_stride_argument,
    scan_config,
)
from btd_core.cli.failures import cannot_run
from btd_core.cli.interrupt import StopOnInterrupt
from btd_core.cli.progress import slice_progress
from btd_core.errors import BtdError
from btd_core.exit_status import ExitStatus
from btd_core.findings.column_plan import TableShape, plan_columns
from btd_core.findings.score_text import score_text
from btd_core.safe_text import middle_ellipsis, path_ellipsis, printable
from btd_core.scoring.rarity import chance_text, rarity_short, rarity_text
from btd_core.study.records import Finding, series_label

DICOM_NO_PHI = (
    "--dicom copies the patient and study modules (name, ID, birth date, ...) from the "
    "source images into the SR and SEG, so it cannot honour --no-phi: leave out one of them "
    "(de-identify the study first to share DICOM findings without PHI)"
)

if TYPE_CHECKING:  # imported when a command runs: btd --help stays quick
    from btd_core.audit.study_audit import AuditResult


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register ``btd scan`` on the main parser's subcommands."""
    parser = commands.add_parser(
        "scan",
        help="score every slice of a study folder and write a forensic report",
        description="Walk STUDY_DIR (DICOM series found by content, PNG/JPEG/TIFF and .npy "
        "stacks), score every slice with the ONNX scorer, rank the most suspicious slices and "
        "write report.html, findings.csv, series.csv, files.csv, report.json and PNG overlays "
        "into --out. Nothing is written into STUDY_DIR. Exit status: 0 all files read, 1 some "
        "files failed (see files.csv), 2 the audit could not run.",
    )
    parser.add_argument("study", type=Path, metavar="STUDY_DIR")
    add_model_argument(parser)
    parser.add_argument("--out", type=Path, required=True, help="report folder (outside STUDY_DIR)")
    add_provider_argument(parser)
    add_stride_argument(parser)
    parser.add_argument(
        "--patch-at",
        nargs=2,
        type=int,
        metavar=("X", "Y"),
        help="the paper's mode: score one patch per slice centred at column X, row Y",
    )
    add_score_arguments(parser)
    parser.add_argument("--top", type=int, default=10, help="ranked slices to print (default: 10)")
    add_overlays_argument(parser)
    parser.add_argument(
        "--no-phi",
        action="store_true",
        help="leave patient identifiers (name, ID, study date) out of the report",
    )
    parser.add_argument(
        "--dicom",
        action="store_true",
        help="also write each DICOM series' top --top slices as a DICOM SR (TID 1500) and a "
        "SEG of the flagged regions into OUT/dicom, to open in a DICOM viewer (copies the "
        "patient and study modules: not with --no-phi)",
    )
    add_overwrite_argument(parser)
    add_engine_arguments(parser)
    add_limit_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, console: Console) -> int:
    """Run ``btd scan``; returns the exit status."""
    from btd_core.audit.study_audit import audit_study
    from btd_core.findings.output_folder import prepare_report_folder

    if not args.study.is_dir():
        return cannot_run(console, "btd scan", f"{args.study} is not a folder")
    if args.dicom and args.no_phi:
        return cannot_run(console, "btd scan", DICOM_NO_PHI)
    try:
        prepare_report_folder(args.out, args.study, overwrite=args.overwrite)
    except BtdError as err:
        return cannot_run(console, "btd scan", err)
    progress, on_progress = slice_progress(console, "scoring")
    try:
        with StopOnInterrupt(console) as interrupt, progress:
            result = audit_study(
                args.study,
                args.model,
                args.out,
                scan_config(args),
                command_line=sys.argv,
                on_progress=on_progress,
                should_stop=interrupt.requested,
            )
    except BtdError as err:
        return cannot_run(console, "btd scan", err)
    except OSError as err:  # the report folder went away or filled up during the scan
        return cannot_run(console, "btd scan", f"cannot write the report into {args.out}: {err}")
    print_audit_summary(console, result, args.top)
    _print_score_mode(console, result.run.settings, args)
    _print_dicom(console, result.run.settings.get("dicom"), result.report.sidecar_json.parent)
    if result.outcome.cancelled:
        done, total = result.outcome.slices_done, result.outcome.slices_total
        line = f"cancelled after {done} of {total} slices: the report holds what was done"
        console.print(Text(line, style="yellow"))
        return ExitStatus.CANCELLED
    if not result.findings:
        return ExitStatus.SOME_FAILED  # nothing could be scored: not a clean audit
    return ExitStatus.SOME_FAILED if result.files_failed else ExitStatus.OK


def _print_dicom(console: Console, record: object, report_dir: Path) -> None:
    """Where ``--dicom`` wrote its objects, and each series' note (not DICOM, refused)."""
    if not isinstance(record, dict):
        return
    series = record.get("series", [])
    written = sum(len(item["files"]) for item in series)
    folder = report_dir / str(record["folder"])
    console.print(Text(f"dicom: {written} DICOM objects (SR, SEG) in {folder}"), soft_wrap=True)
    for item in series:
        if item["note"]:
            line = f"dicom: {printable(item['series_key'])}: {printable(item['note'])}"
            console.print(Text(line, style="yellow"), soft_wrap=True)


def _print_score_mode(console: Console, settings: dict, args: argparse.Namespace) -> None:
    """Which slice score ran and, when ``auto`` found no calibration, how to get one."""
    mode = settings["score_mode"]
    calibration = settings.get("calibration")
    line = f"slice score: {mode}"
    if calibration:
        line += f" (calibration {Path(calibration['file']).name})"
    if settings.get("series_context"):
        line += ", with series context"
    console.print(Text(line))
    if settings.get("score_meaning"):
        console.print(Text(f"note: {settings['score_meaning']}", style="dim"), soft_wrap=True)
    if args.score == "auto" and mode == "local":
        console.print(
            Text(
                f"no calibration for this model: btd calibrate --model {args.model} GENUINE_DIR "
                "makes one, and the calibrated score then runs by default",
                style="yellow",
            ),
            soft_wrap=True,
        )


SUMMARY_TABLE = TableShape(
    columns=(
        *("rank", "score", "rarity", "signal", "series", "slice", "pos mm", "where x,y size"),
        "file",
    ),
    yielding=("pos mm", "rarity", "where x,y size", "signal"),
    cell_padding=3,
    border=1,
)
"""The terminal table for :func:`btd_core.findings.column_plan.plan_columns` (rich's
heavy box: a bar and a blank each side of a cell): when whole file names would be wider
than the terminal, the position, the rarity among genuine slices, the region and then the
signal give way (the top lead's line below the table says all of them for the top slice);
rank, score, series, slice and file always stay, and the file name is then cut to fit on
one line.  Without genuine slices' scores (:func:`summary_shape`) there is no rarity column."""


def summary_shape(rarity: bool) -> TableShape:
    """:data:`SUMMARY_TABLE`, without its rarity column when no finding has one."""
    if rarity:
        return SUMMARY_TABLE
    return replace(
        SUMMARY_TABLE,
        columns=tuple(c for c in SUMMARY_TABLE.columns if c != "rarity"),
        yielding=tuple(c for c in SUMMARY_TABLE.yielding if c != "rarity"),
    )


def lead_lines(top: Finding, slices: int, settings: dict) -> list[str]:
    """What the terminal says of the top lead under the table, whatever its width: which
    signal fired and where, how rare its score is among the calibration's genuine slices,
    and how many of the study's ``slices`` would score as high by chance if all were
    genuine (:mod:`btd_core.scoring.rarity`); with a calibration that did not record its
    genuine slices' scores, how to get them."""
    result = top.result
    x, y, size = result.region
    signal = SIGNAL_WORDS.get(result.signal, result.signal or "unknown")
    line = (
        f"top lead: slice {result.slice_index + 1}/{len(top.series.slices)} of "
        f"{printable(series_label(top.series))}, score {score_text(result.score)} by "
        f"{signal}, at x {x}, y {y} ({size} px)"
    )
    tail, genuine = top.genuine_tail, top.genuine_slices
    if tail is None or not genuine:
        lines = [line]
        if settings.get("score_mode") == "calibrated" and settings.get("series_context"):
            lines.append(
                "the calibration holds no genuine slices' scores: btd calibrate again to "
                "see how rare a score is among genuine slices"
            )
        return lines
    return [f"{line}: {rarity_text(tail, genuine)}", chance_text(tail, genuine, slices)]


SIGNAL_WORDS = {
    "residual": "the residual against its neighbouring slices",
    "pixels": "its pixels against its neighbouring slices",
    "tissue": "its tissue's residual (judged alone)",
    "energy": "its residual energy",
    "tile": "its tile's residual",
}
"""The signal that gave a lead its score (:attr:`btd_core.study.records.SliceResult.signal`),
in words."""


def print_audit_summary(console: Console, result: AuditResult, top: int) -> None:
    """The ranked table of the ``top`` slices, file counts, errors and the report folder.

    One line per slice at any width (:data:`SUMMARY_TABLE`): when whole file names do not
    fit, the position and then the region give way, series labels are cut at 16
    characters, and file names are shortened, the file name kept whole where it fits
    (``export/ch…/IM07523``).
    """
    rows = []
    for finding in result.findings[:top]:
        location = finding.slice.location
        rows.append(
            {
                "rank": str(finding.rank),
                "score": score_text(finding.result.score),
                "rarity": rarity_short(finding.genuine_tail, finding.genuine_slices),
                "signal": finding.result.signal,
                "series": printable(series_label(finding.series)),
                "slice": f"{finding.result.slice_index + 1}/{len(finding.series.slices)}",
                "pos mm": "" if location is None else f"{location:.1f}",
                "where x,y size": "{},{} {}".format(*finding.result.region),
                "file": printable(finding.file.relpath),
            }
        )

    shape = summary_shape(any(row["rarity"] for row in rows))
    natural = {name: max([len(name), *(len(row[name]) for row in rows)]) for name in shape.columns}
    plan = plan_columns(shape, console.width, natural)
    shown = plan.shown
    for row in rows:
        if plan.series_width is not None:
            row["series"] = middle_ellipsis(row["series"], plan.series_width)
        if plan.file_width is not None:
            row["file"] = path_ellipsis(row["file"], plan.file_width)
    table = Table(
        title="most suspicious slices",
        title_justify="left",
        caption="slice N/M: the series' slice N of M, counted from 1",
        caption_justify="left",
    )
    for name in shown:
        right = name in ("rank", "slice", "pos mm")
        table.add_column(name, justify="right" if right else "left", no_wrap=True)
    for row in rows:
        table.add_row(*(Text(row[name]) for name in shown))
    if result.findings:
        console.print(table)
        for line in lead_lines(result.findings[0], len(result.findings), result.run.settings):
            console.print(Text(line), soft_wrap=True)
    else:
        console.print(Text("no slice was scored", style="yellow"))
    counts: dict[str, int] = {}
    for record in result.discovery.files:
        counts[record.status] = counts.get(record.status, 0) + 1
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    if not counts:
        summary = "none found: the folder holds no files"
    console.print(Text(f"files: {summary}; provider {result.run.provider}"))
    for record in result.discovery.files:
        if record.status == "error":
            line = Text(f"error: {printable(record.relpath)}: {record.reason}", style="yellow")
            console.print(line, soft_wrap=True)
    console.print(Text(f"report: {result.report.sidecar_json.parent}", style="bold"))
