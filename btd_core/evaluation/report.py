"""``btd eval``'s report: ``scores.csv``, ``metrics.csv``, ``roc.png``, ``report.html`` and
``eval.json``.

``scores.csv`` has one row per item, ``metrics.csv`` one per set and then ``all``;
``eval.json`` records what was run, on what (every CSV read, with its SHA-256), with
which model, libraries and slice score, when (UTC), and the SHA-256 of the other four
files; ``report.html`` (:mod:`btd_core.evaluation.eval_html`) shows the plot, the metrics
and the run in one self-contained page.  Each file is written atomically; text cells are
formula-safe (:mod:`btd_core.findings.csv_table`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from btd_core.atomic import atomic_write_bytes
from btd_core.engine.scorer import Scorer
from btd_core.evaluation.eval_html import write_eval_html
from btd_core.evaluation.evaluate import EvalResult
from btd_core.evaluation.roc_plot import write_roc_png
from btd_core.evaluation.testset import EvalItem
from btd_core.findings.csv_table import csv_bytes
from btd_core.findings.provenance import (
    command_line,
    host_name,
    iso_utc,
    json_bytes,
    library_versions,
    model_record,
    tool_record,
    utc_now,
)
from btd_core.hashing import bytes_sha256, file_sha256

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


@dataclass(frozen=True)
class EvalRun:
    """What was evaluated and how, for ``eval.json``.

    Attributes
    ----------
    mode:
        How the items were found: ``testset``, ``csv`` or ``folders``.
    items:
        Every item evaluated.
    label_mapping:
        Raw label -> 1 (tampered) or 0 (genuine).
    arguments:
        The command's arguments as given (JSON-serialisable).
    model_path:
        The ONNX file as named by the user.
    started_utc:
        When the evaluation started (timezone-aware).
    slice_score:
        The slice score's record (:meth:`btd_core.scoring.strategy.SliceScore.record`).
    """

    mode: str
    items: Sequence[EvalItem]
    label_mapping: Mapping[str, int]
    arguments: Mapping[str, object]
    model_path: Path
    started_utc: datetime
    slice_score: Mapping[str, object]


def write_eval_report(
    out: Path,
    result: EvalResult,
    run: EvalRun,
    scorer: Scorer,
    command: Sequence[str] | None = None,
) -> dict[str, str]:
    """Write the five files into ``out`` (created if needed); returns name -> SHA-256."""
    out.mkdir(parents=True, exist_ok=True)
    metric_rows = [
        {column: getattr(m, "set_name" if column == "set" else column) for column in METRIC_COLUMNS}
        for m in result.metrics
    ]
    hashes = {}
    scores = score_rows(result)
    for name, columns, rows in (
        ("scores.csv", SCORE_COLUMNS, scores),
        ("metrics.csv", METRIC_COLUMNS, metric_rows),
    ):
        data = csv_bytes(columns, rows, set(columns) - TEXT_COLUMNS)
        atomic_write_bytes(out / name, data)
        hashes[name] = bytes_sha256(data)
    curves = dict(result.curves)
    if len(result.metrics) <= 2:  # a single set: "all" would repeat it
        curves.pop("all", None)
    title = f"ROC curves, btd eval ({run.model_path.name})"
    write_roc_png(out / "roc.png", curves, title=title)
    hashes["roc.png"] = file_sha256(out / "roc.png")
    notes = [{**row, "note": m.note} for row, m in zip(metric_rows, result.metrics, strict=True)]
    record = _sidecar(run, scorer, result, command)
    page = write_eval_html(out, record, notes, scores, (out / "roc.png").read_bytes())
    hashes[page.name] = file_sha256(page)
    sidecar = {**record, "metrics": notes, "output_files": hashes}
    atomic_write_bytes(out / "eval.json", json_bytes(sidecar))
    return hashes


def score_rows(result: EvalResult) -> list[dict[str, object]]:
    """``scores.csv``'s rows, one per item, in the items' order."""
    rows = []
    for r in result.rows:
        item = r.item
        source = (None, None) if item.csv_path is None else (str(item.csv_path), item.row_number)
        values = (item.set_name, item.shown_path, item.x, item.y, item.label, item.raw_label)
        values += (r.score, r.status, r.reason, item.frame, *source)
        rows.append(dict(zip(SCORE_COLUMNS, values, strict=True)))
    return rows


def _sidecar(
    run: EvalRun, scorer: Scorer, result: EvalResult, command: Sequence[str] | None
) -> dict[str, object]:
    csvs = sorted({str(item.csv_path) for item in run.items if item.csv_path is not None})
    statuses = [r.status for r in result.rows]
    return {
        "tool": tool_record("eval"),
        "command_line": command_line(command),
        "arguments": dict(run.arguments),
        "host": host_name(),
        "started_utc": iso_utc(run.started_utc),
        "ended_utc": iso_utc(utc_now()),
        "model": model_record(run.model_path, scorer.model_sha256, scorer.card),
        "provider": {
            "in_use": scorer.provider_in_use,
            "note": scorer.provider_note,
            "batch_size": scorer.batch_size,
        },
        "slice_score": dict(run.slice_score),
        "library_versions": library_versions(),
        "label_mapping": {
            name: sorted(v for v, label in run.label_mapping.items() if label == value)
            for name, value in (("tampered", 1), ("genuine", 0))
        },
        "inputs": {
            "mode": run.mode,
            **{k: run.arguments.get(k) for k in ("testset", "genuine", "tampered")},
            "csv_files": {p: file_sha256(p) for p in csvs},
        },
        "counts": {status: statuses.count(status) for status in ("ok", "error", "skipped")},
    }
