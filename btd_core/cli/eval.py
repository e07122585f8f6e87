"""``btd eval``: score labelled test sets and report AUROC, AP, TPR at 1 % / 5 % FPR, ROC plot.

Writes into ``--out``: ``scores.csv`` (one row per item), ``metrics.csv`` (one row per
set, then ``all``), ``roc.png`` and ``eval.json`` (what was run, with the SHA-256 of
the other three files).  Exit status: 0 every row scored, 1 some rows failed (see
scores.csv), 2 the evaluation could not run.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table
from rich.text import Text

from btd_core.cli.args import (
    add_engine_arguments,
    add_model_argument,
    add_overwrite_argument,
    add_provider_argument,
    add_score_arguments,
    add_stride_argument,
    scan_config,
)
from btd_core.cli.failures import cannot_run
from btd_core.cli.progress import progress_display
from btd_core.errors import BtdError
from btd_core.exit_status import ExitStatus
from btd_core.safe_text import printable

if TYPE_CHECKING:  # imported lazily at run time: ``btd --help`` stays quick
    from btd_core.evaluation.evaluate import EvalResult
    from btd_core.evaluation.testset import EvalItem

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
        "--tampered DIR (whole slices). Each patch or slice gets the slice score of --score, as in "
        "btd scan. The 'type' values are not guessed: "
        "map them with --label. Writes scores.csv, metrics.csv, roc.png, report.html and eval.json "
        "into --out. Exit status: 0 all rows scored, 1 some rows failed, 2 cannot run.",
    )
    parser.add_argument("testset", nargs="?", type=Path, metavar="TESTSET_DIR")
    add_model_argument(parser)
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
    add_provider_argument(parser)
    add_overwrite_argument(parser)
    add_stride_argument(parser)
    add_score_arguments(parser)
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


def run(args: argparse.Namespace, console: Console) -> int:
    """Run ``btd eval``; returns the exit status."""
    import sys

    from btd_core.engine.opening import open_scorer
    from btd_core.evaluation.evaluate import EvalError, check_modality, evaluate
    from btd_core.evaluation.report import EvalRun, write_eval_report
    from btd_core.findings.output_folder import prepare_report_folder
    from btd_core.findings.provenance import utc_now

    started = utc_now()
    config = scan_config(args)
    try:
        prepare_report_folder(
            args.out,
            args.testset,
            args.genuine,
            args.tampered,
            overwrite=args.overwrite,
            inputs_are="input folder",
        )
        scorer = open_scorer(args.model, config.provider, config.engine)
        slice_score = config.score.resolve(args.model, scorer.model_sha256)
        mode, items, mapping = _items(args, scorer.card.modality)
        if not items:
            raise EvalError("nothing to evaluate: no rows or slices were found")
        check_modality(items, scorer.card.profile)
        progress, update = progress_display(console, "scoring", unit="images")
        with progress:
            result = evaluate(
                items,
                scorer,
                config.settings,
                on_progress=lambda done, total: update(done, total, ""),
                slice_score=slice_score,
            )
    except BtdError as err:
        return cannot_run(console, "btd eval", err)
    arguments = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    arguments.pop("run", None)
    arguments["csv"] = [str(p) for p in args.csv]
    evaluated = EvalRun(
        mode=mode,
        items=items,
        label_mapping=mapping,
        arguments=arguments,
        model_path=args.model,
        started_utc=started,
        slice_score=slice_score.record(),
    )
    try:
        write_eval_report(args.out, result, evaluated, scorer, sys.argv)
    except OSError as err:
        return cannot_run(console, "btd eval", f"cannot write the results into {args.out}: {err}")
    console.print(Text(f"slice score: {slice_score.mode}"))
    _print_summary(console, result, args.out)
    return ExitStatus.SOME_FAILED if result.rows_failed else ExitStatus.OK


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
