"""The scan as the user sees it: progress line, tree statuses, ranked table, log.

:class:`ScanView` is the app's scan controller, on the app's thread: it starts runs
(through :class:`btd_tui.jobs.AuditWorkers`), takes their messages, keeps the
:class:`~btd_tui.scan_book.ScanBook`, moves the app's phase, and updates the widgets it
was given.  The table is re-ranked at most every ``TABLE_REFRESH_S`` seconds of the app
(``flush``); the table itself tells the preview which slice is under its cursor.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from btd_core.safe_text import printable
from btd_core.study.records import series_label
from btd_tui.formatting import plural
from btd_tui.jobs import AuditWorkers
from btd_tui.messages import ScanFailed, ScanFinished, ScanProgressed
from btd_tui.scan_book import ScanBook, mismatch
from btd_tui.state import AuditHost, AuditSession, PlantedEdit, ScanPhase
from btd_tui.widgets.findings_table import FindingsTable
from btd_tui.widgets.log_panel import LogPanel
from btd_tui.widgets.scan_status import ScanStatus
from btd_tui.widgets.study_tree import StudyTree

if TYPE_CHECKING:
    from btd_core.study.records import Discovery, Series

LOGGED_SKIPPED = 20
"""Skipped files listed one by one in the log (the tree lists them all)."""


class ScanView:
    """Starts, cancels and resumes the scan, and shows it (see the module docstring).

    The phase it moves is the host's (the app's reactive ``phase``: setting it rewrites
    the progress line); ``session`` and ``book`` exist once the study and the model are
    both loaded.
    """

    def __init__(
        self,
        host: AuditHost,
        jobs: AuditWorkers,
        *,
        status: ScanStatus,
        log: LogPanel,
        tree: StudyTree,
        table: FindingsTable,
        planted: Sequence[PlantedEdit] = (),
    ) -> None:
        self.host = host
        self.jobs = jobs
        self.status = status
        self.log = log
        self.tree = tree
        self.table = table
        self.planted = tuple(planted)
        self.run_id = 0
        self.discovery: Discovery | None = None
        self.session: AuditSession | None = None
        self.book: ScanBook | None = None
        self.series_by_key: dict[str, Series] = {}
        self.table_dirty = False
        self.failed_files = 0
        self._problem_count = (-1, -1)
        self._logged_errors: set[str] = set()

    @property
    def phase(self) -> ScanPhase:
        """The app's phase."""
        return self.host.phase

    def discovered(self, discovery: Discovery) -> None:
        """Tree and log from a fresh discovery."""
        self.discovery = discovery
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

    def ready(self, session: AuditSession) -> None:
        """Discovery and scorer are both there: the scan can start."""
        self.session = session
        self.book = ScanBook(session.discovery, session.scorer.card, session.settings.overlays)
        self.refresh_series()
        self.host.phase = ScanPhase.READY
        series = len(self.book.fitting_series)
        self.status.show_progress(0, self.book.total)
        self.status.set_detail(f"{self.book.total} slices in {series} series to score · s starts")

    def start(self, resume_only: bool = False) -> None:
        """Start a run (first, or resuming a cancelled one)."""
        phase = self.phase
        if self.book is None or self.session is None or not phase.usable:
            self.host.say("not ready: the study or the model is not loaded", severity="warning")
            return
        if phase.running:
            self.host.say(
                "the scan is already running"
                if phase is ScanPhase.SCANNING
                else "still cancelling: wait for the current slice",
                severity="warning",
            )
            return
        if resume_only and not phase.resumable:
            self.host.say("nothing to resume: no cancelled scan", severity="warning")
            return
        if phase is ScanPhase.DONE:
            self.host.say("the scan is complete: e exports the report")
            return
        from btd_core.findings.provenance import utc_now

        resuming = phase.resumable
        skip = self.book.begin_run(utc_now())
        self.run_id += 1
        self.host.phase = ScanPhase.SCANNING
        self.status.show_progress(self.book.tried, self.book.total)
        verb = f"resuming at {self.book.tried}/{self.book.total}" if resuming else "scoring"
        stride = self.session.settings.stride_for(self.session.scorer.card.patch_size)
        self.log.entry(f"{verb}: {self.book.total} slices, stride {stride} px")
        self.jobs.start_scan(self.run_id, self.session, skip)

    def cancel(self) -> None:
        """Ask the running scan to stop before its next slice."""
        if self.phase is not ScanPhase.SCANNING:
            self.host.say("no scan is running", severity="warning")
            return
        self.jobs.stop_event.set()
        self.host.phase = ScanPhase.CANCELLING

    def progressed(self, message: ScanProgressed) -> None:
        """One slice was tried (a late message of an earlier run is ignored)."""
        if message.run_id != self.run_id or self.book is None:
            return
        progress = message.progress
        key = self.book.record(progress)
        if progress.result is not None:
            self.table_dirty = True
            if not self.table.row_count:
                self.flush()  # the first ranked row shows at once, later ones throttled
        if key is not None and key[0] in self.series_by_key:
            self.tree.set_series_status(key[0], *self.series_status(self.series_by_key[key[0]]))
        self.status.show_progress(
            self.book.tried,
            self.book.total,
            self.book.rate(),
            self.book.seconds_left(),
            self.failed_files + progress.files_failed,
        )

    def finished(self, message: ScanFinished) -> None:
        """A run ended: merge it, refresh everything, log a summary."""
        if message.run_id != self.run_id or self.book is None:
            return
        outcome = message.outcome
        self.book.finish(outcome)
        self.host.phase = ScanPhase.CANCELLED if outcome.cancelled else ScanPhase.DONE
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
        if not outcome.cancelled and self.book.results:
            from btd_core.scoring.strategy import SCORE_MEANING

            self.log.entry(f"note: {SCORE_MEANING}", "dim")
        self._log_planted()
        if outcome.cancelled:
            self.status.set_detail(self.status.detail_text + " · r resumes")

    def _log_planted(self) -> None:
        """Say where each known tampering ranked (``btd demo``'s planted slices)."""
        planted = self.planted
        if not planted or self.book is None or self.discovery is None:
            return
        from btd_core.findings.ranking import rank

        findings = rank(self.book.results, self.discovery, self.genuine_scores())
        ranks = {f.file.relpath: f.rank for f in findings}
        for edit in planted:
            where = ranks.get(edit.relpath)
            text = f"rank {where} of {len(findings)}" if where else "not scored"
            self.log.entry(
                f"planted {printable(edit.description)} in {printable(edit.relpath)}: {text}",
                "magenta",
            )

    def failed(self, message: ScanFailed) -> None:
        """A run broke: log it; the audit can be resumed."""
        if message.run_id != self.run_id:
            return
        self.log.error(f"the scan stopped on an error: {message.error}")
        self.host.phase = ScanPhase.FAILED
        if self.book is not None:
            self.book.cancelled = True
        self.refresh_series()

    def flush(self) -> None:
        """Re-rank into the table when results arrived; refresh unreadable/skipped files."""
        discovery = self.discovery
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
            self.table.show(rank(self.book.results, discovery, self.genuine_scores()))

    def genuine_scores(self) -> tuple[float, ...] | None:
        """The calibration's genuine slices' scores when they are scores of the slice score
        in use (the findings then carry their rarity among them), else ``None``."""
        return None if self.session is None else self.session.slice_score.genuine_scores

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
        count = len(series.slices)
        tried = min(self.book.series_tried.get(series.key, 0), count)
        if tried >= count:
            return self._finished_status(series)
        if self.phase.running and tried:
            return f"scoring {tried}/{count}", "bold"
        if self.phase is ScanPhase.CANCELLED:
            return f"cancelled at {tried}/{count}", "yellow"
        if self.phase is ScanPhase.FAILED:
            return f"stopped on an error at {tried}/{count}", "red"
        return "pending", ""

    def _finished_status(self, series: Series) -> tuple[str, str]:
        """A tried series: what really happened to its slices and files."""
        assert self.book is not None
        paths = {str(ref.path) for ref in series.slices}
        failed = sum(
            1 for r in self.book.discovery.files if r.status == "error" and str(r.path) in paths
        )
        scored = sum(
            1 for index in range(len(series.slices)) if self.book.result_for((series.key, index))
        )
        count = len(series.slices)
        files = f"{failed} file{'s' if failed != 1 else ''} failed"
        if scored == 0:
            return (
                (f"not scored · {files}", "red") if failed else ("not scored: no tissue", "yellow")
            )
        done = "scored" if scored == count else f"scored {scored}/{count}"
        if failed:
            return f"{done} · {files}", "yellow"
        return done, "green" if scored == count else "yellow"

    def export_problem(self) -> str | None:
        """Why exporting is not possible now, or ``None``."""
        if not self.phase.usable or self.book is None:
            return "nothing to export: the study or the model is not loaded"
        if self.phase.running:
            return "the scan is running: cancel it (c) or wait for it to finish, then export"
        if self.book.runs == 0:
            return "nothing scored yet: start the scan (s) first"
        return None

    def export_to(self, folder: Path) -> None:
        """Write the report of everything scored so far into ``folder`` (a thread)."""
        if self.session is None or self.book is None or self.book.started_utc is None:
            return
        self.log.entry(f"exporting the report to {folder} …")
        self.jobs.write_report(
            folder, self.session, self.book.merged_outcome(), self.book.started_utc
        )

    def exported(self, folder: str, files: list[str]) -> None:
        """The report was written."""
        self.log.entry(f"report written to {folder}: {', '.join(files)}", "green")
        self.host.say(f"report written to {folder}", title="export")

    def export_failed(self, folder: str, error: str) -> None:
        """The report could not be written (the audit goes on)."""
        self.log.error(f"export to {folder} failed: {error}")
        self.host.say(error, title="export failed", severity="error")

    def label(self, series_key: str) -> str:
        """A series' short name (description, else the tail of its key)."""
        series = self.series_by_key.get(series_key)
        return series_label(series) if series else series_key
