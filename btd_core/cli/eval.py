"""``btd eval``: score labelled test sets and report AUROC, AP, TPR at 1 % / 5 % FPR, ROC plot.

Writes into ``--out``: ``scores.csv`` (one row per item), ``metrics.csv`` (one row per
set, then ``all``), ``roc.png`` and ``eval.json`` (what was run, with the SHA-256 of
the other three files).  Exit status: 0 every row scored, 1 some rows failed (see
scores.csv), 2 the evaluation could not run.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import socket
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from btd_core.cli.args import add_engine_arguments, engine_options
from btd_core.safe_text import printable

if TYPE_CHECKING:  # imported lazily at run time: ``btd --help`` stays quick
    from btd_core.engine.scorer import Scorer
    from btd_core.evaluation.evaluate import EvalResult
    from btd_core.evaluation.testset import EvalItem

EXIT_OK = 0
EXIT_ROWS_FAILED = 1
EXIT_CANNOT_RUN = 2
SCORE_COLUMNS = (
    *("set", "path", "x", "y", "label", "raw_label", "score", "status", "reason"),
    *("frame", "csv_file", "csv_row"),
)
METRIC_COLUMNS = (
    *("set", "n_genuine", "n_tampered", "auroc", "average_precision"),
    *("tpr_at_1pct_fpr", "tpr_at_5pct_fpr"),
)
TEXT_COLUMNS = frozenset({"set", "path", "raw_label", "status", "reason", "csv_file"})
"""Cells holding text (from files, or ours): neutralised; the others are numbers we format."""
ERRORS_SHOWN = 10


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register ``btd eval`` on the main parser's subcommands."""
    parser = commands.add_parser(
        "eval",
        help="measure detection on labelled test sets (AUROC, AP, TPR at 1%%/5%% FPR, ROC)",
        description="Score labelled images and measure how well the scorer separates "
        "tampered from genuine ones. Input: TESTSET_DIR in the public BTD layout "
        "(CT/injection/CT_injection.csv, ..., MRI/MRI_removal.csv), or --csv FILE in the "
        "same layout (path,x,y,type and optional set/method column), or --genuine DIR "
        "--tampered DIR (whole slices, max tile score). The 'type' values are not guessed: "
        "map them with --label. Writes scores.csv, metrics.csv, roc.png and eval.json into "
        "--out. Exit status: 0 all rows scored, 1 some rows failed, 2 cannot run.",
    )
    parser.add_argument("testset", nargs="?", type=Path, metavar="TESTSET_DIR")
    parser.add_argument("--model", type=Path, required=True, help="ONNX scorer from btd-export")
    parser.add_argument("--out", type=Path, required=True, help="folder for the results")
    parser.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="CLASS=VALUE[,VALUE]",
        help="map 'type' values to a class: tampered=... or genuine=... (repeatable)",
    )
    parser.add_argument(
        "--csv",
        action="append",
        type=Path,
        default=[],
        metavar="FILE",
        help="a CSV in the test-set layout (repeatable); paths relative to it or TESTSET_DIR",
    )
    parser.add_argument("--genuine", type=Path, metavar="DIR", help="folder of genuine slices")
    parser.add_argument("--tampered", type=Path, metavar="DIR", help="folder of tampered slices")
    parser.add_argument("--provider", choices=("auto", "cuda", "cpu"), default="auto")
    add_engine_arguments(parser)
    parser.set_defaults(run=run)


def _items(args: argparse.Namespace, modality: str) -> tuple[str, list[EvalItem], dict[str, int]]:
    """The mode, the items and the label mapping asked for by the arguments; in a
    TESTSET_DIR only the CSVs of the model's ``modality`` are read."""
    from btd_core.evaluation.testset import (
        TestSetError,
        discover_sets,
        folder_pair,
        parse_label_options,
        read_csvs,
    )

    folders = args.genuine is not None or args.tampered is not None
    if folders:
        if args.genuine is None or args.tampered is None:
            raise TestSetError("--genuine and --tampered go together")
        if args.csv or args.testset is not None or args.label:
            raise TestSetError(
                "--genuine/--tampered take their labels from the folders: "
                "no TESTSET_DIR, --csv or --label with them"
            )
        return "folders", folder_pair(args.genuine, args.tampered), {}
    mapping = parse_label_options(args.label)
    if args.csv:
        if args.testset is not None and not args.testset.is_dir():
            raise TestSetError(f"test-set folder not found: {args.testset}")
        return "csv", read_csvs(args.csv, mapping, root=args.testset), mapping
    if args.testset is None:
        raise TestSetError("give TESTSET_DIR, --csv FILE, or --genuine DIR --tampered DIR")
    return "testset", discover_sets(args.testset, mapping, modality), mapping


def _check_output_outside(args: argparse.Namespace) -> None:
    """Refuse an output folder inside an input folder (inputs are never written into)."""
    from btd_core.evaluation.testset import TestSetError

    out = args.out.resolve()
    for folder in (args.testset, args.genuine, args.tampered):
        if folder is not None and (out == folder.resolve() or folder.resolve() in out.parents):
            raise TestSetError(
                f"the output folder {args.out} is inside the input folder {folder}; inputs "
                "are never written into: choose an output folder outside it"
            )


def run(args: argparse.Namespace, console: Console) -> int:
    """Run ``btd eval``; returns the exit status."""
    from btd_core.engine.model_card import ModelCardError
    from btd_core.engine.scorer import ProviderError, Scorer
    from btd_core.evaluation.evaluate import EvalError, check_modality, evaluate
    from btd_core.evaluation.testset import TestSetError
    from btd_core.findings.report import utc_now

    started = utc_now()

    def fail(message: str) -> int:
        console.print(Text(f"btd eval: {message}", style="red"), soft_wrap=True)
        return EXIT_CANNOT_RUN

    try:
        _check_output_outside(args)
    except TestSetError as err:
        return fail(str(err))
    try:
        scorer = Scorer(args.model, provider=args.provider, engine=engine_options(args))
    except FileNotFoundError:
        return fail(f"no such model file: {args.model}")
    except (ModelCardError, ProviderError) as err:
        return fail(str(err))
    except Exception as err:  # onnxruntime's own errors for a file that is not ONNX
        return fail(f"{args.model} is not a readable ONNX model: {err}")
    try:
        mode, items, mapping = _items(args, scorer.card.modality)
    except TestSetError as err:
        return fail(str(err))
    try:
        if not items:
            raise EvalError("nothing to evaluate: no rows or slices were found")
        check_modality(items, scorer.card.profile)
        columns = (TextColumn("scoring"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        progress = Progress(*columns, console=console)
        task = progress.add_task("eval", total=len(items))
        with progress:
            result = evaluate(
                items,
                scorer,
                on_progress=lambda done, total: progress.update(task, completed=done),
            )
    except EvalError as err:
        return fail(str(err))
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        sidecar = _sidecar(args, mode, items, mapping, scorer, result, started)
        _write_outputs(args.out, result, sidecar, args.model.name)
    except OSError as err:
        return fail(f"cannot write the results into {args.out}: {err}")
    _print_summary(console, result, args.out)
    return EXIT_ROWS_FAILED if result.rows_failed else EXIT_OK


def _cell(column: str, value: object) -> str:
    from btd_core.findings.report import neutralise_cell

    if value is None:
        return ""
    if column in TEXT_COLUMNS:
        return neutralise_cell(str(value))
    return repr(value) if isinstance(value, float) else str(value)


def _csv_bytes(columns: Sequence[str], rows: Sequence[dict[str, object]]) -> bytes:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(_cell(c, row[c]) for c in columns)
    return buffer.getvalue().encode("utf-8", errors="backslashreplace")


def _score_rows(result: EvalResult) -> list[dict[str, object]]:
    rows = []
    for r in result.rows:
        item = r.item
        source = (None, None) if item.csv_path is None else (str(item.csv_path), item.row_number)
        values = (item.set_name, item.shown_path, item.x, item.y, item.label, item.raw_label)
        values += (r.score, r.status, r.reason, item.frame, *source)
        rows.append(dict(zip(SCORE_COLUMNS, values, strict=True)))
    return rows


def _write_outputs(out: Path, result: EvalResult, sidecar: dict[str, object], model: str) -> None:
    """``scores.csv``, ``metrics.csv``, ``roc.png``, then ``eval.json`` (atomically each)."""
    from btd_core.atomic import atomic_write_bytes
    from btd_core.evaluation.roc_plot import write_roc_png

    metric_rows = [
        {column: getattr(m, "set_name" if column == "set" else column) for column in METRIC_COLUMNS}
        for m in result.metrics
    ]
    hashes = {}
    for name, columns, rows in (
        ("scores.csv", SCORE_COLUMNS, _score_rows(result)),
        ("metrics.csv", METRIC_COLUMNS, metric_rows),
    ):
        data = _csv_bytes(columns, rows)
        atomic_write_bytes(out / name, data)
        hashes[name] = hashlib.sha256(data).hexdigest()
    curves = dict(result.curves)
    if len(result.metrics) <= 2:  # a single set: "all" would repeat it
        curves.pop("all", None)
    write_roc_png(out / "roc.png", curves, title=f"ROC curves, btd eval ({model})")
    hashes["roc.png"] = hashlib.sha256((out / "roc.png").read_bytes()).hexdigest()
    notes = [{**row, "note": m.note} for row, m in zip(metric_rows, result.metrics, strict=True)]
    sidecar = {**sidecar, "metrics": notes, "output_files": hashes}
    text = json.dumps(sidecar, indent=2, ensure_ascii=False, allow_nan=False, default=str)
    atomic_write_bytes(out / "eval.json", (text + "\n").encode("utf-8", errors="backslashreplace"))


def _sidecar(
    args: argparse.Namespace,
    mode: str,
    items: Sequence[EvalItem],
    mapping: dict[str, int],
    scorer: Scorer,
    result: EvalResult,
    started: datetime,
) -> dict[str, object]:
    """What was run, on what (every CSV read, with its SHA-256), with which model and
    libraries, and when (UTC)."""
    from btd_core import __version__
    from btd_core.findings.report import library_versions, utc_now

    arguments = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    arguments.pop("run", None)
    arguments["csv"] = [str(p) for p in args.csv]
    csvs = sorted({str(item.csv_path) for item in items if item.csv_path is not None})
    statuses = [r.status for r in result.rows]
    return {
        "tool": {"name": "btd", "command": "eval", "version": __version__},
        "command_line": list(sys.argv),
        "arguments": arguments,
        "host": socket.gethostname(),
        "started_utc": started.isoformat(),
        "ended_utc": utc_now().isoformat(),
        "model": {
            "path": str(args.model),
            "sha256": scorer.model_sha256,
            "card": scorer.card.to_metadata(),
        },
        "provider": {
            "in_use": scorer.provider_in_use,
            "note": scorer.provider_note,
            "batch_size": scorer.batch_size,
        },
        "library_versions": library_versions(),
        "label_mapping": {
            name: sorted(v for v, label in mapping.items() if label == value)
            for name, value in (("tampered", 1), ("genuine", 0))
        },
        "inputs": {
            "mode": mode,
            **{k: arguments[k] for k in ("testset", "genuine", "tampered")},
            "csv_files": {p: hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in csvs},
        },
        "counts": {status: statuses.count(status) for status in ("ok", "error", "skipped")},
    }


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _print_summary(console: Console, result: EvalResult, out: Path) -> None:
    table = Table(
        title="detection metrics",
        title_justify="left",
        caption="AP: average precision; TPR@n%: true positive rate at n % FPR",
        caption_justify="left",
    )
    table.add_column("set", overflow="fold", ratio=1)
    for name in ("genuine", "tampered", "AUROC", "AP", "TPR@1%", "TPR@5%"):
        table.add_column(name, justify="right", no_wrap=True, min_width=len(name))
    for m in result.metrics:
        rates = (m.auroc, m.average_precision, m.tpr_at_1pct_fpr, m.tpr_at_5pct_fpr)
        table.add_row(
            Text(printable(m.set_name)),
            str(m.n_genuine),
            str(m.n_tampered),
            *(_rate(v) for v in rates),
        )
    console.print(table)
    for m in result.metrics:
        if m.note:
            console.print(
                Text(f"{printable(m.set_name)}: {m.note}", style="yellow"), soft_wrap=True
            )
    errors = [r for r in result.rows if r.status == "error"]
    for r in errors[:ERRORS_SHOWN]:
        where = f" (row {r.item.row_number})" if r.item.csv_path is not None else ""
        line = f"error: {printable(r.item.shown_path)}{where}: {printable(r.reason)}"
        console.print(Text(line, style="yellow"), soft_wrap=True)
    if len(errors) > ERRORS_SHOWN:
        more = f"... and {len(errors) - ERRORS_SHOWN} more error rows (see scores.csv)"
        console.print(Text(more, style="yellow"), soft_wrap=True)
    console.print(Text(f"results: {out}", style="bold"), soft_wrap=True)
