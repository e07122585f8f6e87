"""``btd audit``: the terminal app (Textual) that audits one study folder.

Layout: the model card and provider on top; the study tree and the ranked slices on
the left, the slice preview on the right; the scan's progress line and the log below.

The app owns the audit's state: the request (:class:`~btd_tui.state.AuditRequest`), the
phase (a reactive :class:`~btd_tui.state.ScanPhase`: its watcher rewrites the progress
line), and, once the study and the model are loaded, the
:class:`~btd_tui.state.AuditSession`.  Everything slow runs in thread workers
(:class:`btd_tui.jobs.AuditWorkers`) that post messages (:mod:`btd_tui.messages`); the
app hands them to its two controllers, :class:`~btd_tui.scan_view.ScanView` (scan,
tree, table, log) and :class:`~btd_tui.preview_control.PreviewControl` (the preview),
which were given the widgets they update.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import on
from textual.app import App, ComposeResult
from textual.binding import BindingType
from textual.containers import Horizontal, Vertical
from textual.notifications import SeverityLevel
from textual.reactive import reactive
from textual.screen import ModalScreen
from textual.widgets import Footer, Tree

from btd_core.safe_text import printable
from btd_tui import messages as msg
from btd_tui.jobs import AuditWorkers
from btd_tui.keys import KEYS
from btd_tui.palette import AuditCommands
from btd_tui.preview_control import PreviewControl
from btd_tui.scan_view import ScanView
from btd_tui.screens.error import ErrorScreen
from btd_tui.screens.export import ExportScreen, default_report_folder
from btd_tui.screens.help import HelpScreen
from btd_tui.serial_scorer import SerialScorer
from btd_tui.state import AuditRequest, AuditSession, PlantedEdit, ScanPhase
from btd_tui.widgets.findings_table import FindingsTable
from btd_tui.widgets.log_panel import LogPanel
from btd_tui.widgets.model_panel import ModelPanel
from btd_tui.widgets.scan_status import ScanStatus
from btd_tui.widgets.slice_preview import SlicePreview
from btd_tui.widgets.study_tree import NodeData, StudyTree

if TYPE_CHECKING:
    from btd_core.audit.scan_config import ScanConfig
    from btd_core.scoring.strategy import SliceScore
    from btd_core.scoring.tiles import ScanSettings
    from btd_core.study.records import Discovery

TABLE_REFRESH_S = 0.5
"""How often the ranked table is re-ranked at most while results arrive."""


class BtdApp(App[int]):
    """Audit one study folder with one ONNX scorer (see :func:`create_app`)."""

    CSS_PATH = "btd.tcss"
    TITLE = "btd audit"
    COMMANDS: ClassVar = App.COMMANDS | {AuditCommands}
    HORIZONTAL_BREAKPOINTS: ClassVar = [(0, "-narrow"), (120, "-wide")]
    VERTICAL_BREAKPOINTS: ClassVar = [(0, "-short"), (36, "-tall")]
    BINDINGS: ClassVar[list[BindingType]] = KEYS

    phase: reactive[ScanPhase] = reactive(ScanPhase.LOADING, init=False)
    """Where the audit is; setting it rewrites the progress line."""

    def __init__(self, request: AuditRequest) -> None:
        super().__init__()
        self.request = request
        self.study_dir = request.study_dir
        self.model_path = request.model_path
        self.discovery: Discovery | None = None
        self.scorer: SerialScorer | None = None
        self.settings: ScanSettings | None = None
        self.slice_score: SliceScore | None = None
        self.session: AuditSession | None = None
        self.fatal_error: str | None = None
        self.first_draw: float | None = None
        self.jobs = AuditWorkers(self, request)
        self.model_panel = ModelPanel(self.model_path.name, request.provider, id="model-panel")
        self.study_tree = StudyTree(str(self.study_dir), id="study-tree")
        self.findings = FindingsTable(id="findings")
        self.findings.planted = frozenset(edit.relpath for edit in request.planted)
        self.slice_preview = SlicePreview(request.ascii, request.preview, id="preview")
        self.scan_status = ScanStatus(id="scan-status")
        self.log_panel = LogPanel(id="log")
        self.scan_view = ScanView(
            self,
            self.jobs,
            status=self.scan_status,
            log=self.log_panel,
            tree=self.study_tree,
            table=self.findings,
            planted=request.planted,
        )
        self.preview = PreviewControl(
            self, self.jobs, self.scan_view, preview=self.slice_preview, log=self.log_panel
        )

    def compose(self) -> ComposeResult:
        """Model panel; tree + table | preview; progress line; log; footer."""
        yield self.model_panel
        with Horizontal(id="main"):
            with Vertical(id="left"):
                yield self.study_tree
                yield self.findings
            yield self.slice_preview
        yield self.scan_status
        yield self.log_panel
        yield Footer(compact=True)

    def on_mount(self) -> None:
        """Draw at once; walk the study and open the model in threads."""
        self.study_tree.border_title = Text(printable(self.study_dir))
        self.log_panel.border_title = "log"
        self.scan_status.show_phase(self.phase)
        self.log_panel.entry(f"study folder: {self.study_dir}")
        self.findings.focus()
        self.jobs.load()
        self.set_interval(TABLE_REFRESH_S, self.scan_view.flush)
        self.call_after_refresh(self._drawn)

    def watch_phase(self, phase: ScanPhase) -> None:
        """The progress line's first label follows the phase."""
        self.scan_status.show_phase(phase)

    def say(
        self, message: str, *, title: str = "", severity: SeverityLevel = "information"
    ) -> None:
        """A notification whose text is shown literally (paths and errors are never markup)."""
        self.notify(printable(message), title=printable(title), severity=severity, markup=False)

    def _drawn(self) -> None:
        """Note when the first screen was drawn (``first_draw``, ``time.perf_counter``)."""
        self.first_draw = time.perf_counter()

    # -- messages from workers ---------------------------------------------------------

    def on_discovery_ready(self, message: msg.DiscoveryReady) -> None:
        """Fill the tree, log unreadable files; start when the scorer is ready too."""
        self.discovery = message.discovery
        self.scan_view.discovered(message.discovery)
        self._maybe_ready()

    def on_discovery_failed(self, message: msg.DiscoveryFailed) -> None:
        """The study cannot be walked: an error that stays."""
        self._fatal("the study folder cannot be read", message.error)

    def on_scorer_ready(self, message: msg.ScorerReady) -> None:
        """Show the model card and provider; resolve the slice score asked for (once: one
        that cannot run is an error on screen); start when discovery is done too."""
        from btd_core.scoring.strategy import ScoreModeError
        from btd_core.scoring.tiles import CoverageError

        scorer = message.scorer
        self.scorer = scorer
        self.model_panel.show_scorer(scorer)
        config = self.request.scan_config()
        try:
            self.slice_score = config.score.resolve(self.model_path, scorer.model_sha256)
        except ScoreModeError as err:
            self._fatal(f"the slice score ({config.score.mode}) cannot run", str(err))
            return
        try:
            self.settings = config.settings.resolved(scorer.card, self.slice_score.calibrated_with)
        except CoverageError as err:
            self._fatal(f"the coverage ({config.settings.tiles}) cannot run", str(err))
            return
        self._maybe_ready()

    def on_scorer_failed(self, message: msg.ScorerFailed) -> None:
        """Bad model or CUDA not active: an error on screen, no scoring."""
        self.model_panel.show_error(message.title, message.error)
        self._fatal(message.title, message.error)

    def _fatal(self, title: str, error: str) -> None:
        self.fatal_error = f"{title}: {error}"
        self.phase = ScanPhase.ERROR
        self.log_panel.error(self.fatal_error)
        self.push_screen(ErrorScreen(title, error))

    def _maybe_ready(self) -> None:
        """Once the study is walked and the model open: log the model and score, start."""
        from btd_core.scoring.strategy import CalibratedScore

        discovery, scorer = self.discovery, self.scorer
        settings, slice_score = self.settings, self.slice_score
        if discovery is None or scorer is None or settings is None or slice_score is None:
            return
        if self.fatal_error or self.session is not None:
            return
        self.session = AuditSession(discovery, scorer, settings, slice_score)
        log = self.log_panel  # logged here, after discovery: a stable order
        log.entry(f"model {self.model_path.name}: provider {scorer.provider_in_use}")
        if scorer.provider_note:
            log.warning(f"provider note: {scorer.provider_note}")
        line = f"slice score: {slice_score.mode}"
        if isinstance(slice_score, CalibratedScore) and slice_score.calibration_path is not None:
            line += f" (calibration {slice_score.calibration_path.name})"
        log.entry(line)
        asked = self.request.scan_config().score.mode
        if asked == "auto" and slice_score.mode == "local":
            log.warning("no calibration for this model: btd calibrate makes one")
        self.scan_view.ready(self.session)
        if self.request.autostart:
            self.action_start_scan()

    def on_scan_progressed(self, message: msg.ScanProgressed) -> None:
        """One slice done: counters, tree, table (throttled)."""
        self.scan_view.progressed(message)

    def on_scan_finished(self, message: msg.ScanFinished) -> None:
        """A run ended (done or cancelled)."""
        self.scan_view.finished(message)

    def on_scan_failed(self, message: msg.ScanFailed) -> None:
        """A run broke on an unexpected error: logged, the app stays."""
        self.scan_view.failed(message)

    def on_preview_ready(self, message: msg.PreviewReady) -> None:
        """A slice's picture was computed."""
        self.preview.ready(message)

    def on_preview_failed(self, message: msg.PreviewFailed) -> None:
        """A slice's picture could not be computed."""
        self.preview.failed(message)

    def on_export_done(self, message: msg.ExportDone) -> None:
        """The report was written."""
        self.scan_view.exported(message.folder, message.files)

    def on_export_failed(self, message: msg.ExportFailed) -> None:
        """The report could not be written."""
        self.scan_view.export_failed(message.folder, message.error)

    # -- widget events -----------------------------------------------------------------

    @on(FindingsTable.SliceHighlighted)
    def _slice_highlighted(self, message: FindingsTable.SliceHighlighted) -> None:
        self.preview.cursor_moved(message.slice_key)

    @on(Tree.NodeSelected, "#study-tree")
    def _node_selected(self, event: Tree.NodeSelected[NodeData]) -> None:
        data = event.node.data
        if data is not None and data.kind == "series":
            self.preview.show_series(data.key)

    # -- actions -----------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Audit keys do nothing while a dialog (help, export, error) is open."""
        return not (isinstance(self.screen, ModalScreen) and action not in ("quit", "help"))

    def action_start_scan(self) -> None:
        """Start scoring (or resume a cancelled scan)."""
        self.scan_view.start()

    def action_resume_scan(self) -> None:
        """Resume a cancelled scan (slices already tried are skipped)."""
        self.scan_view.start(resume_only=True)

    def action_cancel_scan(self) -> None:
        """Stop after the slice being scored."""
        self.scan_view.cancel()

    def action_export(self) -> None:
        """Ask for a report folder (a dialog), then write the report there (thread)."""
        problem = self.scan_view.export_problem()
        if problem:
            self.say(problem, title="export", severity="warning")
            return
        from btd_core.findings.provenance import utc_now

        default = default_report_folder(utc_now().strftime("%Y%m%dT%H%M%SZ"))

        def chosen(folder: Path | None) -> None:
            if folder is not None:
                self.scan_view.export_to(folder)

        self.push_screen(ExportScreen(self.study_dir, default), chosen)

    def action_toggle_heat(self) -> None:
        """Heat map on/off."""
        self.slice_preview.toggle_heat()

    def action_toggle_ascii(self) -> None:
        """ASCII ramp / colour half-blocks."""
        self.slice_preview.toggle_ascii()

    def action_zoom(self) -> None:
        """Zoom on the worst tile, or back to the whole slice."""
        self.slice_preview.toggle_zoom()

    def action_next_slice(self) -> None:
        """The next slice of the previewed series."""
        self.preview.step(+1)

    def action_previous_slice(self) -> None:
        """The previous slice of the previewed series."""
        self.preview.step(-1)

    def action_sort(self) -> None:
        """Sort the ranked table by the next column."""
        self.findings.next_sort()

    def action_help(self) -> None:
        """Show every key binding."""
        if isinstance(self.screen, HelpScreen):
            self.screen.dismiss(None)
        else:
            self.push_screen(HelpScreen(self.BINDINGS))

    async def action_quit(self) -> None:
        """Quit; a running scan stops after its current slice."""
        self.jobs.stop(self.scorer)
        self.exit(0)

    def on_unmount(self) -> None:
        """Let the scan and preview threads end soon."""
        self.jobs.stop(self.scorer)


def create_app(
    study_dir: str | Path,
    model: str | Path,
    config: ScanConfig | None = None,
    *,
    ascii: bool = False,
    preview: str = "auto",
    autostart: bool = True,
    command_line: Sequence[str] | None = None,
    planted: Sequence[PlantedEdit] = (),
) -> BtdApp:
    """The audit app for ``study_dir`` scored by the ONNX scorer ``model``.

    Nothing slow happens here: the study is walked and the model opened in thread
    workers once the app runs, so the first screen draws at once.  ``config``: the scan
    configuration (:class:`btd_core.audit.scan_config.ScanConfig`, as ``btd audit``'s
    command line builds it; default: its defaults): its provider (``cuda`` is an error on
    screen unless CUDA is active, never a silent fallback), engine options, slice score
    (resolved once the model is open: one that cannot run, no calibration or another
    model's, is an error on screen), scan settings (stride, read threads, and the overlays
    an export draws) and study limits.  ``ascii``: start the preview in ASCII mode;
    ``preview``: how the preview draws (:mod:`btd_tui.preview_mode`: ``auto`` asks the
    terminal here, before the app runs, ``kitty``, ``sixel``, ``halfblock``, ``ascii``);
    ``autostart``: score as soon as the study and model are loaded (else on ``s``);
    ``command_line``: recorded in exported reports (default ``sys.argv``); ``planted``:
    tamperings known to be in the study (``btd demo``'s), marked in the table and their
    ranks logged.
    """
    request = AuditRequest(
        study_dir=Path(study_dir),
        model_path=Path(model),
        config=config,
        ascii=ascii,
        preview=preview,
        autostart=autostart,
        planted=tuple(planted),
        command_line=tuple(command_line if command_line is not None else sys.argv),
    )
    return BtdApp(request)
