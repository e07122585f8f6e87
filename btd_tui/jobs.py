"""What the app's thread workers run: plain functions that post messages, never touch widgets.

Each function takes a ``post`` callable (``App.post_message``, thread safe) and reports
what it did with one of :mod:`btd_tui.messages`.  The heavy imports (onnxruntime,
pydicom) happen here, in the worker thread, so that the first screen draws before they
are loaded.  :class:`AuditWorkers` starts them as Textual thread workers and keeps typed
references to the running ones.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from textual.app import App
from textual.message import Message
from textual.worker import Worker, get_current_worker

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
from btd_tui.serial_scorer import SerialScorer
from btd_tui.state import AuditRequest, AuditSession, SliceKey

if TYPE_CHECKING:
    from btd_core.audit.pipeline import ScanOutcome
    from btd_core.engine.options import EngineOptions
    from btd_core.scoring.strategy import SliceVerdict
    from btd_core.study.limits import StudyLimits
    from btd_core.study.records import Series

Post = Callable[[Message], object]
"""Posts a message to the app (``App.post_message``: thread safe)."""


def load_discovery(
    study_dir: Path,
    post: Post,
    should_stop: Callable[[], bool],
    limits: StudyLimits | None = None,
) -> None:
    """Walk the study folder (read-only); post DiscoveryReady or DiscoveryFailed.  When
    ``should_stop`` turns true (the app quits) the walk ends within a file and posts
    nothing."""
    try:
        from btd_core.study.discovery import discover

        discovery = discover(study_dir, limits=limits, should_stop=should_stop)
    except Exception as err:  # a study that cannot be walked at all
        post(DiscoveryFailed(f"{type(err).__name__}: {err}"))
        return
    if not should_stop():
        post(DiscoveryReady(discovery))


def load_scorer(
    model: Path, provider: str, post: Post, engine: EngineOptions | None = None
) -> None:
    """Open the ONNX scorer; post :class:`ScorerReady`, or :class:`ScorerFailed` with the reason.

    A requested-but-inactive CUDA is an error, never a silent fallback; every failure is
    explained as ``btd scan`` explains it (:func:`btd_core.engine.opening.open_scorer`).
    """
    try:
        from btd_core.engine.opening import ModelOpenError, open_scorer
    except Exception as err:  # onnxruntime missing or broken
        post(ScorerFailed("onnxruntime cannot be loaded", f"{type(err).__name__}: {err}"))
        return
    try:
        scorer = open_scorer(model, provider, engine)  # type: ignore[arg-type]
    except ModelOpenError as err:
        post(ScorerFailed(err.title, str(err)))
    else:
        post(ScorerReady(SerialScorer(scorer)))


def run_scan(
    run_id: int,
    session: AuditSession,
    skip: Collection[SliceKey],
    post: Post,
    should_stop: Callable[[], bool],
) -> None:
    """One scan run: a :class:`ScanProgressed` after every slice, then :class:`ScanFinished`."""
    from btd_core.audit.pipeline import scan

    try:
        outcome = scan(
            session.discovery,
            session.scorer,
            session.settings,
            on_progress=lambda progress: post(ScanProgressed(run_id, progress)),
            should_stop=should_stop,
            skip=skip,
            slice_score=session.slice_score,
        )
    except Exception as err:  # an engine bug must not kill the app silently
        post(ScanFailed(run_id, f"{type(err).__name__}: {err}"))
        return
    post(ScanFinished(run_id, outcome))


def preview_slice(
    series: Series,
    index: int,
    session: AuditSession,
    post: Post,
    cancelled: Callable[[], bool],
) -> None:
    """Read, window and score one slice again for the preview (image + heat map).

    The slice is judged by the scan's own slice score, so the heat map and the boxed
    region are the scan's (local windows, or the calibrated surprise map; with series
    context its neighbouring slices are scored too, as the scan judged it).
    """
    from btd_core.scoring.series_context import SeriesContext
    from btd_core.scoring.tiles import SliceView, view_slice

    try:
        view, scores = view_slice(series, index, session.scorer, session.settings)
        if cancelled():
            return
        own = session.slice_score.judge(series.key, index, view.image, scores)
        session.verdicts.put((series.key, index), own)

        def own_verdict(other: int) -> SliceVerdict | None:
            if other == index:
                return own
            return None if cancelled() else _neighbour_verdict(series, other, session)

        verdict = SeriesContext(session.slice_score, own_verdict).judged(index)
    except Exception as err:  # unreadable slice: shown in the preview, the audit goes on
        if not cancelled():
            post(PreviewFailed(series.key, index, str(err)))
        return
    if cancelled():
        return
    if verdict is None:  # nothing scored on this slice: its image, no box
        post(PreviewReady(series.key, index, view, None))
        return
    view = SliceView(image=view.image, heat=verdict.heat())
    post(PreviewReady(series.key, index, view, verdict.result))


def export_report(
    folder: Path,
    *,
    session: AuditSession,
    outcome: ScanOutcome,
    started: datetime,
    command_line: Sequence[str],
    post: Post,
) -> None:
    """Write the same report as ``btd scan --dicom`` into ``folder``: CSV, JSON, PNG
    overlays, and for each DICOM series a DICOM SR and SEG of its top slices (as many as
    the overlays) in ``folder/dicom``, to open in a DICOM viewer."""
    from btd_core.audit.scan_config import ReportOutputs
    from btd_core.audit.study_audit import write_audit_report

    try:
        result = write_audit_report(
            folder,
            discovery=session.discovery,
            outcome=outcome,
            scorer=session.scorer,
            settings=session.settings,
            slice_score=session.slice_score,
            started=started,
            outputs=ReportOutputs(dicom_top=max(session.settings.overlays, 1)),
            command_line=command_line,
        )
    except Exception as err:  # AuditError, permissions, full disk: shown, the app goes on
        post(ExportFailed(str(folder), str(err)))
        return
    report = result.report
    names = [report.findings_csv.name, report.series_csv.name, report.files_csv.name]
    names += [report.sidecar_json.name, result.html.name]
    names += [f"overlays/{p.name}" for p in result.overlays]
    dicom = result.run.settings.get("dicom") or {}
    for series in dicom.get("series", []):
        names += [f"dicom/{Path(name).name}" for name in series.get("files", [])]
    post(ExportDone(str(folder), names))


class AuditWorkers:
    """The app's thread workers: each method starts one of the functions above as a
    Textual thread worker on ``app`` (messages go to ``app.post_message``) and keeps the
    :class:`~textual.worker.Worker` in a typed field.

    Attributes
    ----------
    stop_event:
        Set to stop the scan before its next slice (cancel, quit).
    scan, preview, export:
        The latest worker of each kind (``None`` before the first).
    """

    def __init__(self, app: App[int], request: AuditRequest) -> None:
        self._app = app
        self._request = request
        self.stop_event = threading.Event()
        self.scan: Worker[None] | None = None
        self.preview: Worker[None] | None = None
        self.export: Worker[None] | None = None

    def _start(
        self, work: Callable[[], None], name: str, group: str, exclusive: bool
    ) -> Worker[None]:
        return self._app.run_worker(
            work, name=name, group=group, exclusive=exclusive, thread=True, exit_on_error=False
        )

    def load(self) -> None:
        """Walk the study and open the model, each in its own thread."""
        request, post = self._request, self._app.post_message
        self._start(
            lambda: load_discovery(
                request.study_dir, post, self.stop_event.is_set, request.scan_config().limits
            ),
            "discovery",
            "load",
            exclusive=False,
        )
        self._start(
            lambda: load_scorer(
                request.model_path, request.provider, post, request.scan_config().engine
            ),
            "scorer",
            "load",
            exclusive=False,
        )

    def start_scan(self, run_id: int, session: AuditSession, skip: set[SliceKey]) -> Worker[None]:
        """Score every slice not in ``skip`` (stops when asked, before a slice)."""
        post = self._app.post_message
        self.stop_event.clear()

        def work() -> None:
            worker = get_current_worker()
            run_scan(
                run_id,
                session,
                skip,
                post,
                lambda: self.stop_event.is_set() or worker.is_cancelled,
            )

        self.scan = self._start(work, "scan", "scan", exclusive=True)
        return self.scan

    def compute_preview(self, series: Series, index: int, session: AuditSession) -> None:
        """Recompute one slice's image and heat map (the newest request wins)."""
        post = self._app.post_message

        def work() -> None:
            worker = get_current_worker()
            preview_slice(series, index, session, post, lambda: worker.is_cancelled)

        self.preview = self._start(work, "preview", "preview", exclusive=True)

    def write_report(
        self, folder: Path, session: AuditSession, outcome: ScanOutcome, started: datetime
    ) -> None:
        """Write the report of everything scored so far into ``folder``."""
        post, command_line = self._app.post_message, self._request.command_line

        def work() -> None:
            export_report(
                folder,
                session=session,
                outcome=outcome,
                started=started,
                command_line=command_line,
                post=post,
            )

        self.export = self._start(work, "export", "export", exclusive=True)

    def stop(self, scorer: SerialScorer | None) -> None:
        """Let the threads end soon: the scan stops before its next slice, and previews
        waiting for the scorer give up."""
        self.stop_event.set()
        if scorer is not None:
            scorer.closing.set()


def _neighbour_verdict(series: Series, index: int, session: AuditSession) -> SliceVerdict | None:
    """The own verdict of a neighbouring slice for series context; ``None`` when it does
    not exist or cannot be read (the scan then judged without it too)."""
    from btd_core.scoring.tiles import view_slice
    from btd_core.study.pixels import SliceReadError

    if not 0 <= index < len(series.slices):
        return None
    found, cached = session.verdicts.get((series.key, index))
    if found:
        return cached  # type: ignore[return-value]
    try:
        view, scores = view_slice(series, index, session.scorer, session.settings)
    except SliceReadError:
        return None
    verdict = session.slice_score.judge(series.key, index, view.image, scores)
    session.verdicts.put((series.key, index), verdict)
    return verdict
