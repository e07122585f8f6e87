"""``btd audit``: the terminal app (Textual) that audits one study folder.

Layout: the model card and provider on top; the study tree and the ranked slices on
the left, the slice preview on the right; the scan's progress line and the log below.
Everything slow runs in thread workers (:mod:`btd_tui.jobs`) that post messages
(:mod:`btd_tui.messages`); the app updates its state and widgets on its own thread.
Preview handling lives in :class:`btd_tui.preview_control.PreviewControl`.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import App, ComposeResult
from textual.binding import BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Tree
from textual.worker import Worker

from btd_core.safe_text import printable
from btd_tui import messages as msg
from btd_tui.jobs import AuditWorkers
from btd_tui.keys import KEYS
from btd_tui.palette import AuditCommands
from btd_tui.preview_control import PreviewControl
from btd_tui.scan_view import ScanView
from btd_tui.screens.error import ErrorScreen
from btd_tui.screens.help import HelpScreen
from btd_tui.widgets.findings_table import FindingsTable
from btd_tui.widgets.log_panel import LogPanel
from btd_tui.widgets.model_panel import ModelPanel
from btd_tui.widgets.scan_status import ScanStatus
from btd_tui.widgets.slice_preview import SlicePreview
from btd_tui.widgets.study_tree import NodeData, StudyTree

TABLE_REFRESH_S = 0.5
"""How often the ranked table is rebuilt at most while results arrive."""


class BtdApp(AuditWorkers, App[int]):
    """Audit one study folder with one ONNX scorer (see :func:`btd_tui.factory.create_app`)."""

    CSS_PATH = "btd.tcss"
    TITLE = "btd audit"
    COMMANDS: ClassVar = App.COMMANDS | {AuditCommands}
    HORIZONTAL_BREAKPOINTS: ClassVar = [(0, "-narrow"), (120, "-wide")]
    VERTICAL_BREAKPOINTS: ClassVar = [(0, "-short"), (36, "-tall")]
    BINDINGS: ClassVar[list[BindingType]] = KEYS

    def __init__(
        self,
        study_dir: Path,
        model: Path,
        *,
        provider: str = "auto",
        ascii: bool = False,
        autostart: bool = True,
        settings: Any = None,
        stride: int | None = None,
        command_line: Sequence[str] | None = None,
        engine: Any = None,
        workers: int | None = None,
        score_mode: str = "auto",
        window: int = 24,
        calibration_path: Path | None = None,
    ) -> None:
        super().__init__()
        self.study_dir = Path(study_dir)
        self.model_path = Path(model)
        self.provider = provider
        self.start_ascii = ascii
        self.autostart = autostart
        self.settings = settings
        self.stride = stride
        self.engine = engine
        self.read_workers = workers
        self.score_mode = score_mode
        self.window = window
        self.calibration_path = calibration_path
        self.calibration: Any = None
        self.command_line = list(command_line if command_line is not None else sys.argv)
        self.discovery: Any = None
        self.scorer: Any = None
        self.fatal_error: str | None = None
        self.stop_event = threading.Event()
        self.scan_worker: Worker[None] | None = None
        self.scan_view = ScanView(self)
        self.preview = PreviewControl(self)
        self.first_draw: float | None = None

    def compose(self) -> ComposeResult:
        """Model panel; tree + table | preview; progress line; log; footer."""
        yield ModelPanel(self.model_path.name, self.provider, id="model-panel")
        with Horizontal(id="main"):
            with Vertical(id="left"):
                yield StudyTree(str(self.study_dir), id="study-tree")
                yield FindingsTable(id="findings")
            yield SlicePreview(ascii=self.start_ascii, id="preview")
        yield ScanStatus(id="scan-status")
        yield LogPanel(id="log")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        """Draw at once; walk the study and open the model in threads."""
        self.query_one("#study-tree", StudyTree).border_title = Text(printable(self.study_dir))
        self.query_one(LogPanel).border_title = "log"
        self.query_one(ScanStatus).set_state("loading", "bold")
        self.query_one(LogPanel).entry(f"study folder: {self.study_dir}")
        self.query_one(FindingsTable).focus()
        self._load_discovery()
        self._load_scorer()
        self.set_interval(TABLE_REFRESH_S, self.scan_view.flush)
        self.call_after_refresh(self._drawn)

    def say(self, message: str, *, title: str = "", severity: Any = "information") -> None:
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
        """Show the model card and provider; start when discovery is done too."""
        self.scorer = message.scorer
        if self.settings is None:
            from btd_core.scoring.tiles import ScanSettings

            self.settings = ScanSettings(
                stride=self.stride,
                workers=self.read_workers,
                score_mode=self.score_mode,
                window=self.window,
            )
        self.query_one(ModelPanel).show_scorer(self.scorer)
        from btd_core.audit.study_audit import AuditError, settle_score_mode

        try:
            self.settings, self.calibration, self.calibration_path = settle_score_mode(
                self.settings, self.model_path, self.calibration_path, self.scorer
            )
        except AuditError as err:
            self._fatal("no calibration for this model", str(err))
            return
        self._maybe_ready()

    def on_scorer_failed(self, message: msg.ScorerFailed) -> None:
        """Bad model or CUDA not active: an error on screen, no scoring."""
        self.query_one(ModelPanel).show_error(message.title, message.error)
        self._fatal(message.title, message.error)

    def _fatal(self, title: str, error: str) -> None:
        self.fatal_error = f"{title}: {error}"
        self.scan_view.set_phase("error")
        self.query_one(LogPanel).error(self.fatal_error)
        self.push_screen(ErrorScreen(title, error))

    def _maybe_ready(self) -> None:
        if self.discovery is None or self.scorer is None or self.fatal_error:
            return
        log = self.query_one(LogPanel)  # logged here, after discovery: a stable order
        log.entry(f"model {self.model_path.name}: provider {self.scorer.provider_in_use}")
        if self.scorer.provider_note:
            log.warning(f"provider note: {self.scorer.provider_note}")
        mode = self.settings.score_mode
        if self.calibration_path is not None:
            log.entry(f"slice score: {mode} (calibration {self.calibration_path.name})")
        else:
            log.entry(f"slice score: {mode}")
        if self.score_mode == "auto" and mode == "local":
            log.warning("no calibration for this model: btd calibrate makes one")
        self.scan_view.ready(self.discovery, self.scorer.card, self.settings.keep_views)
        if self.autostart:
            self.action_start_scan()

    def on_scan_progressed(self, message: msg.ScanProgressed) -> None:
        """One slice done: counters, tree, table (throttled)."""
        if message.run_id == self.scan_view.run_id:
            self.scan_view.progressed(message.progress)

    def on_scan_finished(self, message: msg.ScanFinished) -> None:
        """A run ended (done or cancelled)."""
        if message.run_id == self.scan_view.run_id:
            self.scan_view.finished(message.outcome)

    def on_scan_failed(self, message: msg.ScanFailed) -> None:
        """A run broke on an unexpected error: logged, the app stays."""
        if message.run_id == self.scan_view.run_id:
            self.scan_view.failed(message.error)

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

    @on(DataTable.RowHighlighted, "#findings")
    def _row_highlighted(self) -> None:
        self.preview.cursor_moved()

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
        """Ask for a report folder, then write the report there (thread)."""
        self.scan_view.export()

    def action_toggle_heat(self) -> None:
        """Heat map on/off."""
        self.query_one(SlicePreview).toggle_heat()

    def action_toggle_ascii(self) -> None:
        """ASCII ramp / colour half-blocks."""
        self.query_one(SlicePreview).toggle_ascii()

    def action_zoom(self) -> None:
        """Zoom on the worst tile, or back to the whole slice."""
        self.query_one(SlicePreview).toggle_zoom()

    def action_next_slice(self) -> None:
        """The next slice of the previewed series."""
        self.preview.step(+1)

    def action_previous_slice(self) -> None:
        """The previous slice of the previewed series."""
        self.preview.step(-1)

    def action_sort(self) -> None:
        """Sort the ranked table by the next column."""
        self.query_one(FindingsTable).next_sort()

    def action_help(self) -> None:
        """Show every key binding."""
        if isinstance(self.screen, HelpScreen):
            self.screen.dismiss(None)
        else:
            self.push_screen(HelpScreen(self.BINDINGS))

    async def action_quit(self) -> None:
        """Quit; a running scan stops after its current slice."""
        self._stop_threads()
        self.exit(0)

    def on_unmount(self) -> None:
        """Let the scan and preview threads end soon."""
        self._stop_threads()

    def _stop_threads(self) -> None:
        self.stop_event.set()  # the scan checks it before each slice
        closing = getattr(self.scorer, "closing", None)
        if closing is not None:
            closing.set()  # previews waiting for the scorer give up


def create_app(
    study_dir: str | Path,
    model: str | Path,
    provider: str = "auto",
    ascii: bool = False,
    autostart: bool = True,
    settings: Any = None,
    *,
    stride: int | None = None,
    command_line: Sequence[str] | None = None,
    engine: Any = None,
    workers: int | None = None,
    score_mode: str = "auto",
    window: int = 24,
    calibration_path: Path | None = None,
) -> BtdApp:
    """The audit app for ``study_dir`` scored by the ONNX scorer ``model``.

    Nothing slow happens here: the study is walked and the model opened in thread
    workers once the app runs, so the first screen draws at once.  ``provider``:
    ``"auto"``, ``"cuda"`` (an error on screen unless CUDA is active, never a silent
    fallback) or ``"cpu"``; ``ascii``: start the preview in ASCII mode; ``autostart``:
    score as soon as the study and model are loaded (else on ``s``); ``settings``: a
    :class:`btd_core.scoring.tiles.ScanSettings` (default ``ScanSettings(stride=stride)``);
    ``command_line``: recorded in exported reports (default ``sys.argv``); ``engine``: a
    :class:`btd_core.engine.scorer.EngineOptions`; ``workers``: slice-reading threads;
    ``score_mode``, ``window``, ``calibration_path``: as ``btd scan --score``.
    """
    return BtdApp(
        Path(study_dir),
        Path(model),
        provider=provider,
        ascii=ascii,
        autostart=autostart,
        settings=settings,
        stride=stride,
        command_line=command_line,
        engine=engine,
        workers=workers,
        score_mode=score_mode,
        window=window,
        calibration_path=calibration_path,
    )
