"""The scan as the user sees it: phase, progress line, tree statuses, ranked table, log.

:class:`ScanView` is the app's scan controller, on the app's thread: it starts runs
(the app's thread worker calls :func:`btd_core.audit.pipeline.scan`), takes their messages,
keeps the :class:`~btd_tui.scan_worker.ScanBook`, and updates the widgets.  The table
is re-ranked at most every :data:`btd_tui.app.TABLE_REFRESH_S` seconds (``flush``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from btd_core.cli.scan import series_label
from btd_tui.scan_worker import ScanBook, mismatch
from btd_tui.screens.export import ExportScreen, default_report_folder
from btd_tui.widgets.findings_table import FindingsTable
from btd_tui.widgets.log_panel import LogPanel
from btd_tui.widgets.scan_status import ScanStatus
from btd_tui.widgets.study_tree import StudyTree

if TYPE_CHECKING:
    from btd_core.audit.pipeline import ScanOutcome, ScanProgress
    from btd_core.study.records import Discovery, Series
    from btd_tui.app import BtdApp

LOGGED_SKIPPED = 20
"""Skipped files listed one by one in the log (the tree lists them all)."""


def plural(count: int, noun: str) -> str:
    """``"1 file"``, ``"2 files"``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


class ScanView:
    """Phases: loading -> ready -> scanning -> (cancelling -> cancelled ->) done; or error."""

    def __init__(self, app: BtdApp) -> None:
        self.app = app
        self.phase = "loading"
        self.run_id = 0
        self.book: ScanBook | None = None
        self.series_by_key: dict[str, Series] = {}
        self.table_dirty = False
        self.failed_files = 0
        self._problem_count = (-1, -1)
        self._logged_errors: set[str] = set()

    @property
    def status(self) -> ScanStatus:
        """The progress line."""
        return self.app.query_one(ScanStatus)

    @property
    def log(self) -> LogPanel:
        """The log panel."""
        return self.app.query_one(LogPanel)

    @property
    def tree(self) -> StudyTree:
        """The study tree."""
        return self.app.query_one(StudyTree)

    def set_phase(self, phase: str) -> None:
        """Change phase and rewrite the progress line's state."""
        self.phase = phase
        styles = {"error": "bold red", "done": "bold green", "cancelled": "bold yellow"}
        self.status.set_state(phase, styles.get(phase, "bold"))
        if phase == "error":
            self.status.set_detail("no scoring: see the error above")

    def discovered(self, discovery: Discovery) -> None:
        """Tree and log from a fresh discovery."""
        self.series_by_key = {s.key: s for s in discovery.series}
        self.tree.show_discovery(discovery)
        slices = sum(len(s.slices) for s in discovery.series)
        errors = [r for r in discovery.files if r.status == "error"]
        skipped = [r for r in discovery.files if r.status == "skipped"]
        self.log.entry(
            f"found {len(discovery.series)} series ({slices} slices) in {len(discovery.files)} "
            f"files: {len(errors)} unreadable, {len(skipped)} skipped"
        )
        self._log_errors(discovery)
        for record in skipped[:LOGGED_SKIPPED]:
            self.log.entry(f"skipped: {record.relpath}: {record.reason}", "yellow")
        if len(skipped) > LOGGED_SKIPPED:
            self.log.entry(f"… and {len(skipped) - LOGGED_SKIPPED} more skipped (see the tree)")
        self._problem_count = (len(errors), len(skipped))
        self.failed_files = len(errors)

    def _log_errors(self, discovery: Discovery) -> None:
        for record in discovery.files:
            if record.status == "error" and record.relpath not in self._logged_errors:
                self._logged_errors.add(record.relpath)
                self.log.error(f"unreadable: {record.relpath}: {record.reason}")

    def ready(self, discovery: Discovery, card: Any, keep_views: int) -> None:
        """Discovery and scorer are both there: the scan can start."""
        self.book = ScanBook(discovery, card, keep_views=keep_views)
        self.refresh_series()
        self.set_phase("ready")
        series = len({key for key, _ in self.book.order})
        self.status.show_progress(0, self.book.total)
        self.status.set_detail(f"{self.book.total} slices in {series} series to score · s starts")

    def start(self, resume_only: bool = False) -> None:
        """Start a run (first, or resuming a cancelled one)."""
        if self.book is None or self.phase in ("loading", "error"):
            self.app.say("not ready: the study or the model is not loaded", severity="warning")
            return
        if self.phase in ("scanning", "cancelling"):
            self.app.say(
                "the scan is already running"
                if self.phase == "scanning"
                else "still cancelling: wait for the current slice",
                severity="warning",
            )
            return
        if resume_only and self.phase != "cancelled":
            self.app.say("nothing to resume: no cancelled scan", severity="warning")
            return
        if self.phase == "done":
            self.app.say("the scan is complete: e exports the report")
            return
        from btd_core.findings.report import utc_now

        resuming = self.phase == "cancelled"
        skip = self.book.begin_run(utc_now())
        self.run_id += 1
        self.app.stop_event.clear()
        self.set_phase("scanning")
        self.status.show_progress(self.book.tried, self.book.total)
        verb = f"resuming at {self.book.tried}/{self.book.total}" if resuming else "scoring"
        self.log.entry(f"{verb}: {self.book.total} slices, stride {self._stride()} px")
        self.app.scan_worker = self.app.run_scan_worker(self.run_id, skip)

    def _stride(self) -> int:
        settings, card = self.app.settings, self.app.scorer.card
        return settings.stride_for(card.patch_size)

    def cancel(self) -> None:
        """Ask the running scan to stop before its next slice."""
        if self.phase != "scanning":
            self.app.say("no scan is running", severity="warning")
            return
        self.app.stop_event.set()
        self.set_phase("cancelling")

    def progressed(self, progress: ScanProgress) -> None:
        """One slice was tried."""
        assert self.book is not None
        key = self.book.record(progress)
        if progress.result is not None:
            self.table_dirty = True
            if not self.app.query_one(FindingsTable).row_count:
                self.flush()  # the first ranked row shows at once, later ones throttled
        if key is not None:
            self.tree.set_series_status(key[0], *self.series_status(self.series_by_key[key[0]]))
        self.status.show_progress(
            self.book.tried,
            self.book.total,
            self.book.rate(),
            self.book.seconds_left(),
            self.failed_files + progress.files_failed,
        )

    def finished(self, outcome: ScanOutcome) -> None:
        """A run ended: merge it, refresh everything, log a summary."""
        assert self.book is not None
        self.book.finish(outcome)
        self.set_phase("cancelled" if outcome.cancelled else "done")
        self.table_dirty = True
        self.flush()
        self.refresh_series()
        if outcome.cancelled:
            self.log.warning(
                f"scan cancelled at {self.book.tried}/{self.book.total} slices; r resumes"
            )
        else:
            self.log.entry(
                f"scan done: {len(self.book.results)} slices scored, "
                f"{self.book.background_slices} without body, "
                f"{plural(self.failed_files, 'file')} failed",
                "green",
            )
        self.status.show_progress(self.book.tried, self.book.total, failed=self.failed_files)
        if outcome.cancelled:
            self.status.set_detail(self.status.detail_text + " · r resumes")

    def failed(self, error: str) -> None:
        """A run broke: log it; the audit can be resumed."""
        self.log.error(f"the scan stopped on an error: {error}")
        self.set_phase("cancelled")
        if self.book is not None:
            self.book.cancelled = True

    def flush(self) -> None:
        """Re-rank into the table when results arrived; refresh unreadable/skipped files."""
        discovery = self.app.discovery
        if discovery is None:
            return
        errors = sum(1 for r in discovery.files if r.status == "error")
        skipped = sum(1 for r in discovery.files if r.status == "skipped")
        if (errors, skipped) != self._problem_count:
            self._problem_count = (errors, skipped)
            self.failed_files = errors
            self.tree.show_problem_files(discovery.files)
            self._log_errors(discovery)
        if self.table_dirty and self.book is not None:
            from btd_core.findings.ranking import rank

            self.table_dirty = False
            table = self.app.query_one(FindingsTable)
            before = table.current_key()
            table.show(rank(self.book.results, discovery))
            if table.current_key() != before:
                self.app.preview.cursor_moved()

    def refresh_series(self) -> None:
        """Rewrite every series' status in the tree."""
        for series in self.series_by_key.values():
            self.tree.set_series_status(series.key, *self.series_status(series))

    def series_status(self, series: Series) -> tuple[str, str]:
        """``(text, style)``: pending, scoring k/n, scored, cancelled at k/n, skipped: why."""
        if self.book is None:
            return "pending", ""
        reason = mismatch(series, self.book.card)
        if reason:
            return f"skipped: {reason}", "yellow"
        tried, count = (
            min(self.book.series_tried.get(series.key, 0), len(series.slices)),
            len(series.slices),
        )
        if tried >= count:
            paths = {str(ref.path) for ref in series.slices}
            failed = sum(
                1 for r in self.app.discovery.files if r.status == "error" and str(r.path) in paths
            )
            if failed:
                return f"scored · {failed} file{'s' if failed > 1 else ''} failed", "yellow"
            return "scored", "green"
        if self.phase in ("scanning", "cancelling") and tried:
            return f"scoring {tried}/{count}", "bold"
        if self.phase == "cancelled":
            return f"cancelled at {tried}/{count}", "yellow"
        return "pending", ""

    def export(self) -> None:
        """Ask for a report folder (a dialog), then write the report there (thread)."""
        problem = self.export_problem()
        if problem:
            self.app.say(problem, title="export", severity="warning")
            return
        from btd_core.findings.report import utc_now

        default = default_report_folder(utc_now().strftime("%Y%m%dT%H%M%SZ"))

        def chosen(folder: Path | None) -> None:
            if folder is not None:
                self.log.entry(f"exporting the report to {folder} …")
                self.app.export_worker(folder)

        self.app.push_screen(ExportScreen(self.app.study_dir, default), chosen)

    def exported(self, folder: str, files: list[str]) -> None:
        """The report was written."""
        self.log.entry(f"report written to {folder}: {', '.join(files)}", "green")
        self.app.say(f"report written to {folder}", title="export")

    def export_failed(self, folder: str, error: str) -> None:
        """The report could not be written (the audit goes on)."""
        self.log.error(f"export to {folder} failed: {error}")
        self.app.say(error, title="export failed", severity="error")

    def export_problem(self) -> str | None:
        """Why exporting is not possible now, or ``None``."""
        if self.phase in ("loading", "error") or self.book is None:
            return "nothing to export: the study or the model is not loaded"
        if self.phase in ("scanning", "cancelling"):
            return "the scan is running: cancel it (c) or wait for it to finish, then export"
        if self.book.runs == 0:
            return "nothing scored yet: start the scan (s) first"
        return None

    def label(self, series_key: str) -> str:
        """A series' short name (description, else the tail of its key)."""
        series = self.series_by_key.get(series_key)
        return series_label(series) if series else series_key
