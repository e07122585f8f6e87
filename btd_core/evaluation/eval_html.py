"""``btd eval``'s ``report.html``: the ROC plot, the metrics and the run, in one page.

The same self-contained page as a scan's (:mod:`btd_core.findings.html_page`: inline CSS,
the plot as a ``data:`` URI, no script, nothing fetched), made from what ``eval.json``
records: the metrics per set, the items that could not be scored and why (the first
:data:`ITEM_ROWS`; ``scores.csv`` has all), the model, the slice score, the label mapping,
the inputs and the run's provenance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from btd_core.findings.html_page import png_bytes_uri, render_page, write_page
from btd_core.safe_text import printable

REPORT_HTML = "report.html"
ITEM_ROWS = 200
"""Items that failed or were skipped, listed by name (``scores.csv`` has every one)."""
ITEM_COLUMNS = ("set", "path", "label", "status", "reason")
"""The columns of ``scores.csv`` the page lists for each such item."""


def write_eval_html(
    out: Path,
    sidecar: Mapping[str, object],
    metrics: Sequence[Mapping[str, object]],
    scores: Sequence[Mapping[str, object]],
    roc_png: bytes,
) -> Path:
    """Write ``out/report.html`` atomically; returns its path.

    ``sidecar``: ``eval.json``'s record of the run (tool, times, model, provider, slice
    score, label mapping, inputs, counts); ``metrics``: its ``metrics`` rows (with ``note``);
    ``scores``: ``scores.csv``'s rows; ``roc_png``: ``roc.png``'s bytes.
    """
    path = Path(out) / REPORT_HTML
    write_page(path, eval_page(sidecar, metrics, scores, roc_png))
    return path


def eval_page(
    sidecar: Mapping[str, object],
    metrics: Sequence[Mapping[str, object]],
    scores: Sequence[Mapping[str, object]],
    roc_png: bytes,
) -> str:
    """The page's HTML (see :func:`write_eval_html`)."""
    model = _mapping(sidecar.get("model"))
    tool = _mapping(sidecar.get("tool"))
    failed = [
        {key: printable("" if row.get(key) is None else row[key]) for key in ITEM_COLUMNS}
        for row in scores
        if row.get("status") != "ok"
    ]
    return render_page(
        "eval_report.html.j2",
        title=f"btd eval: {printable(Path(str(model.get('path', '?'))).name)}",
        version=printable(tool.get("version", "?")),
        roc=png_bytes_uri(roc_png),
        metrics=[_metric_row(row) for row in metrics],
        failed=failed,
        item_rows=ITEM_ROWS,
        counts=_mapping(sidecar.get("counts")),
        run=_run_facts(sidecar, model),
        score=[
            (printable(k), printable(v))
            for k, v in _mapping(sidecar.get("slice_score")).items()
            if k != "score_meaning"
        ],
        meaning=printable(_mapping(sidecar.get("slice_score")).get("score_meaning", "")),
    )


def _mapping(value: object) -> Mapping[str, object]:
    return value if isinstance(value, Mapping) else {}


def _texts(value: object) -> list[str]:
    """A JSON list's items as text (anything else: none)."""
    return [str(item) for item in value] if isinstance(value, list) else []


def _metric_row(row: Mapping[str, object]) -> dict[str, str]:
    """One set's metrics as text: counts whole, rates to 3 decimals, ``n/a`` when absent."""

    def rate(key: str) -> str:
        value = row.get(key)
        return "n/a" if value is None else f"{float(value):.3f}"  # type: ignore[arg-type]

    return {
        "set": printable(row.get("set", "")),
        "n_genuine": str(row.get("n_genuine", "")),
        "n_tampered": str(row.get("n_tampered", "")),
        "auroc": rate("auroc"),
        "average_precision": rate("average_precision"),
        "tpr_at_1pct_fpr": rate("tpr_at_1pct_fpr"),
        "tpr_at_5pct_fpr": rate("tpr_at_5pct_fpr"),
        "note": printable(row.get("note") or ""),
    }


def _run_facts(sidecar: Mapping[str, object], model: Mapping[str, object]) -> list[tuple[str, str]]:
    """What was run, on what, with which model, when and where."""
    provider = _mapping(sidecar.get("provider"))
    inputs = _mapping(sidecar.get("inputs"))
    card = _mapping(model.get("card"))
    rows: list[tuple[str, object]] = [
        ("btd version", _mapping(sidecar.get("tool")).get("version", "?")),
        ("command line", " ".join(_texts(sidecar.get("command_line")))),
        ("host", sidecar.get("host", "?")),
        ("started (UTC)", sidecar.get("started_utc", "?")),
        ("ended (UTC)", sidecar.get("ended_utc", "?")),
        ("model file", model.get("path", "?")),
        ("model SHA-256", model.get("sha256", "?")),
        ("model modality", card.get("btd.modality", "?")),
        ("checkpoint", card.get("btd.source_name", "?")),
        ("provider", provider.get("in_use", "?")),
        ("inputs", inputs.get("mode", "?")),
    ]
    for name in ("testset", "genuine", "tampered"):
        if inputs.get(name):
            rows.append((name, inputs[name]))
    for csv_path, digest in _mapping(inputs.get("csv_files")).items():
        rows.append((f"CSV {csv_path}", f"SHA-256 {digest}"))
    for name, values in _mapping(sidecar.get("label_mapping")).items():
        rows.append((f"label {name}", ", ".join(_texts(values))))
    for name, value in _mapping(sidecar.get("library_versions")).items():
        rows.append((f"{name} version", value))
    return [(printable(label), printable(value)) for label, value in rows]
