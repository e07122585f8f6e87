"""What the app's thread workers run: plain functions that post messages, never touch widgets.

Each takes a ``post`` callable (``App.post_message``, thread safe) and reports what it
did with one of :mod:`btd_tui.messages`.  The heavy imports (onnxruntime, pydicom) happen
here, in the worker thread, so that the first screen draws before they are loaded.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from textual import work
from textual.message import Message
from textual.worker import get_current_worker

from btd_tui.messages import (
    DiscoveryFailed,
    DiscoveryReady,
    ExportDone,
    ExportFailed,
    PreviewFailed,
    PreviewReady,
    ScanFailed,
    ScanFinished,
    ScanProgressed,
    ScorerFailed,
    ScorerReady,
)

Post = Callable[[Message], Any]


def load_discovery(study_dir: Path, post: Post) -> None:
    """Walk the study folder (read-only); post DiscoveryReady or DiscoveryFailed."""
    try:
        from btd_core.study.discovery import discover

        discovery = discover(study_dir)
    except Exception as err:  # a study that cannot be walked at all
        post(DiscoveryFailed(f"{type(err).__name__}: {err}"))
        return
    post(DiscoveryReady(discovery))


class SerialScorer:
    """A :class:`btd_core.engine.scorer.Scorer` whose ``score`` runs one call at a time.

    The scan and the previews share one onnxruntime session from two threads; run
    together, their activations add up (peak memory about doubles) and they fight for
    the same cores.  Serialised, a preview waits for the slice being scored, then runs.
    Everything else is the wrapped scorer's.
    """

    def __init__(self, scorer: Any) -> None:
        self.scorer = scorer
        self.closing = threading.Event()
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.scorer, name)

    def score(self, patches: Any, with_residuals: bool = False) -> Any:
        """The wrapped scorer's ``score``, under the lock; refused once the app closes
        (so that a waiting preview does not delay quitting by a whole slice)."""
        with self._lock:
            if self.closing.is_set():
                raise RuntimeError("the app is closing")
            return self.scorer.score(patches, with_residuals=with_residuals)


def load_scorer(model: Path, provider: str, post: Post, engine: Any = None) -> None:
    """Open the ONNX scorer; post :class:`ScorerReady`, or :class:`ScorerFailed` with the reason.

    A requested-but-inactive CUDA is an error (``ProviderError``), never a silent fallback.
    """
    try:
        from btd_core.engine.model_card import ModelCardError
        from btd_core.engine.scorer import ProviderError, Scorer
    except Exception as err:  # onnxruntime missing or broken
        post(ScorerFailed("onnxruntime cannot be loaded", f"{type(err).__name__}: {err}"))
        return
    try:
        scorer = Scorer(model, provider=provider, engine=engine)  # type: ignore[arg-type]
    except ProviderError as err:
        post(ScorerFailed(f"provider {provider} is not available", str(err)))
    except ModelCardError as err:
        post(ScorerFailed("not a btd scorer", str(err)))
    except FileNotFoundError:
        post(ScorerFailed("model file not found", f"no such model file: {model}"))
    except Exception as err:  # onnxruntime's own errors for a file that is not ONNX
        post(ScorerFailed("model cannot be opened", f"{model} is not a readable ONNX model: {err}"))
    else:
        post(ScorerReady(SerialScorer(scorer)))


def run_scan(
    run_id: int,
    discovery: Any,
    scorer: Any,
    settings: Any,
    skip: Collection[tuple[str, int]],
    post: Post,
    should_stop: Callable[[], bool],
    calibration: Any = None,
) -> None:
    """One scan run: a :class:`ScanProgressed` after every slice, then :class:`ScanFinished`."""
    from btd_core.audit.pipeline import scan

    try:
        outcome = scan(
            discovery,
            scorer,
            settings,
            on_progress=lambda progress: post(ScanProgressed(run_id, progress)),
            should_stop=should_stop,
            skip=skip,
            calibration=calibration,
        )
    except Exception as err:  # an engine bug must not kill the app silently
        post(ScanFailed(run_id, f"{type(err).__name__}: {err}"))
        return
    post(ScanFinished(run_id, outcome))


def preview_slice(
    series: Any,
    index: int,
    scorer: Any,
    settings: Any,
    post: Post,
    cancelled: Callable[[], bool],
    calibration: Any = None,
) -> None:
    """Read, window and score one slice again for the preview (image + heat map).

    In the local score modes the heat map and the boxed region are the local ones (the
    calibrated surprise map in the ``calibrated`` mode), as in the scan.
    """
    from btd_core.scoring.local import judge_locally
    from btd_core.scoring.tiles import SliceView, view_slice

    try:
        view, scores = view_slice(series, index, scorer, settings)
    except Exception as err:  # unreadable slice: shown in the preview, the audit goes on
        if not cancelled():
            post(PreviewFailed(series.key, index, str(err)))
        return
    if cancelled():
        return
    result = scores.slice_result(series.key, index) if scores.origins else None
    if result is not None and settings.score_mode != "tile":
        verdict = judge_locally(result, view.image, scores, settings, calibration)
        view, result = SliceView(image=view.image, heat=verdict.heat_map()), verdict.result
    post(PreviewReady(series.key, index, view, result))


def export_report(
    folder: Path,
    *,
    discovery: Any,
    outcome: Any,
    scorer: Any,
    settings: Any,
    started: datetime,
    command_line: Sequence[str],
    post: Post,
    calibration_path: Path | None = None,
) -> None:
    """Write the same CSV/JSON/PNG report as ``btd scan`` into ``folder``."""
    from btd_core.audit.study_audit import write_audit_report

    try:
        result = write_audit_report(
            folder,
            discovery=discovery,
            outcome=outcome,
            scorer=scorer,
            settings=settings,
            started=started,
            overlays=settings.keep_views,
            include_phi=True,
            command_line=command_line,
            calibration_path=calibration_path,
        )
    except Exception as err:  # AuditError, permissions, full disk: shown, the app goes on
        post(ExportFailed(str(folder), str(err)))
        return
    report = result.report
    names = [report.findings_csv.name, report.series_csv.name, report.files_csv.name]
    names.append(report.sidecar_json.name)
    names += [f"overlays/{p.name}" for p in result.overlays]
    post(ExportDone(str(folder), names))


class AuditWorkers:
    """The app's thread workers (mixed into :class:`btd_tui.app.BtdApp`): each runs one of
    the functions above with the app's state and ``post_message``."""

    study_dir: Path
    model_path: Path
    provider: str
    engine: Any
    calibration: Any
    calibration_path: Any
    discovery: Any
    scorer: Any
    settings: Any
    stop_event: Any
    scan_view: Any
    command_line: list[str]
    post_message: Callable[[Message], bool]

    @work(thread=True, group="load", exit_on_error=False)
    def _load_discovery(self) -> None:
        load_discovery(self.study_dir, self.post_message)

    @work(thread=True, group="load", exit_on_error=False)
    def _load_scorer(self) -> None:
        load_scorer(self.model_path, self.provider, self.post_message, self.engine)

    @work(thread=True, exclusive=True, group="scan", exit_on_error=False)
    def run_scan_worker(self, run_id: int, skip: set[tuple[str, int]]) -> None:
        """Score every slice not in ``skip`` (thread; stops when asked, before a slice)."""
        worker = get_current_worker()

        def should_stop() -> bool:
            return self.stop_event.is_set() or worker.is_cancelled

        run_scan(
            run_id,
            self.discovery,
            self.scorer,
            self.settings,
            skip,
            self.post_message,
            should_stop,
            self.calibration,
        )

    @work(thread=True, exclusive=True, group="preview", exit_on_error=False)
    def compute_preview(self, series: Any, index: int) -> None:
        """Recompute one slice's image and heat map (thread; the newest request wins)."""
        worker = get_current_worker()
        preview_slice(
            series,
            index,
            self.scorer,
            self.settings,
            self.post_message,
            lambda: worker.is_cancelled,
            self.calibration,
        )

    @work(thread=True, exclusive=True, group="export", exit_on_error=False)
    def export_worker(self, folder: Path) -> None:
        """Write the report of everything scored so far into ``folder`` (thread)."""
        book = self.scan_view.book
        export_report(
            folder,
            discovery=self.discovery,
            outcome=book.merged_outcome(),
            scorer=self.scorer,
            settings=self.settings,
            started=book.started_utc,
            command_line=self.command_line,
            post=self.post_message,
            calibration_path=self.calibration_path if self.calibration else None,
        )
