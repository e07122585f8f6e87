"""An archive's studies, ranked by their most suspicious series (``btd audit OUT`` of a
``btd archive`` output): Enter opens a study's report (:class:`ReportScreen`), Escape
comes back.  Studies that failed or are not done yet are listed too, with their state and
reason: every study is accounted for.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from btd_core.archive.index import ArchiveIndex, ArchiveReadError, ArchiveStudy, read_archive
from btd_core.findings.score_text import score_text
from btd_core.safe_text import middle_ellipsis, printable
from btd_tui.report_screen import ReportScreen
from btd_tui.widgets.log_panel import LogPanel

STUDY_COLUMNS = ("rank", "score", "state", "study", "top series", "slice", "files", "reason")
"""The studies table's columns."""

LABEL_WIDTH = 28
"""Most characters of a study label or series description shown (cut in the middle)."""


def study_cells(study: ArchiveStudy) -> tuple[Text, ...]:
    """One study's row: rank, top score, state, label, top series, its top slice
    (1-based), files (and how many failed), and why it is not scored (last: it may be
    long)."""
    files = str(study.files)
    if study.files_failed:
        files += f" ({study.files_failed} failed)"
    return (
        Text("" if study.rank is None else str(study.rank), justify="right"),
        Text("" if study.top_score is None else score_text(study.top_score), justify="right"),
        Text(printable(study.status), style="" if study.status == "scored" else "yellow"),
        Text(middle_ellipsis(printable(study.label), LABEL_WIDTH)),
        Text(middle_ellipsis(printable(study.top_series_description), LABEL_WIDTH)),
        Text("" if study.top_slice_number is None else str(study.top_slice_number)),
        Text(files, justify="right"),
        Text(printable(study.reason)),
    )


class ArchiveScreen(Screen[None]):
    """The archive's ranked studies; Enter opens one."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open_study", "open", tooltip="open the study's report"),
        Binding("q", "quit", "quit", tooltip="quit"),
    ]

    def __init__(self, out: Path, preview: str = "auto") -> None:
        super().__init__()
        self.out = out
        self.preview = preview
        self.index: ArchiveIndex | None = None
        self.panel = Static(Text(f"archive {printable(out)}"), id="model-panel")
        self.table: DataTable = DataTable(cursor_type="row", zebra_stripes=True, id="studies")
        self.log_panel = LogPanel(id="log")

    def compose(self) -> ComposeResult:
        """Archive line; studies; log; footer."""
        yield self.panel
        yield self.table
        yield self.log_panel
        yield Footer(compact=True)

    def on_mount(self) -> None:
        """Read the manifest (small: one row per study) and list the studies."""
        self.log_panel.border_title = "log"
        for name in STUDY_COLUMNS:
            self.table.add_column(name, key=name)
        self.table.border_title = "studies, most suspicious first"
        try:
            self.index = read_archive(self.out)
        except ArchiveReadError as err:
            self.panel.update(Text(f"cannot open the archive: {printable(err)}", "red"))
            self.log_panel.error(str(err))
            return
        index = self.index
        counts = index.counts()
        created = index.created_utc.split(".")[0].replace("T", " ")
        line = Text(f"archive of {printable(index.root)} · created {created} UTC")
        line.append(f" · model {index.model_sha256[:12]}\n", style="dim")
        line.append(" · ".join(f"{n} {printable(state)}" for state, n in sorted(counts.items())))
        self.panel.update(line)
        for number, study in enumerate(index.studies):
            self.table.add_row(*study_cells(study), key=str(number))
        self.log_panel.entry(
            f"{len(index.studies)} studies; Enter opens the selected study's report"
        )
        self.table.focus()

    def selected(self) -> ArchiveStudy | None:
        """The study under the cursor."""
        if self.index is None or not self.index.studies:
            return None
        return self.index.studies[self.table.cursor_row]

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter or a click on a row opens it."""
        self.action_open_study()

    def action_open_study(self) -> None:
        """Open the selected study's report, or say why there is none."""
        study = self.selected()
        if study is None:
            return
        if study.report_dir is None:
            self.notify(
                f"{printable(study.label)}: no report ({printable(study.status)}"
                + (f": {printable(study.reason)}" if study.reason else "")
                + ")",
                severity="warning",
            )
            return
        self.app.push_screen(ReportScreen(study.report_dir, None, self.preview))
