"""Studies and series found under the study folder, with files that could not be used.

Every label is a :class:`rich.text.Text` built from :func:`btd_core.safe_text.printable`
text: DICOM tags and file names are never parsed as markup.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from btd_core.safe_text import printable
from btd_core.study.records import Discovery, FileRecord, Series, series_label


@dataclass(frozen=True)
class NodeData:
    """What a node stands for: ``kind`` is ``"study"``, ``"series"``, ``"file"`` or ``"group"``;
    ``key`` is the series key or the file's relative path."""

    kind: str
    key: str = ""


def series_text(series: Series, status: str, style: str = "") -> Text:
    """``<description> · CT · 4 slices · 512x512 · <status>``."""
    text = Text(printable(series_label(series)), style="bold")
    details = [printable(series.modality or series.kind), f"{len(series.slices)} slices"]
    if series.rows and series.columns:
        details.append(f"{series.columns}x{series.rows}")
    text.append(" · " + " · ".join(details), style="dim")
    if status:
        text.append(" · ")
        text.append(printable(status), style=style)
    return text


def study_text(series: Series) -> Text:
    """``study <patient name> · <date> · …<study UID tail>`` (or the kind of series)."""
    if not series.study_uid:
        return Text("other series (images, .npy)", style="bold")
    text = Text("study ", style="dim")
    text.append(printable(series.patient_name or "(no patient name)"), style="bold")
    if series.study_date:
        text.append(" · " + printable(series.study_date))
    uid = printable(series.study_uid)
    text.append(" · " + (uid if len(uid) <= 14 else "…" + uid[-12:]), style="dim")
    return text


class StudyTree(Tree[NodeData]):
    """study -> series (slice count, modality, status); unreadable and skipped files."""

    def __init__(self, root_label: str, **kwargs: Any) -> None:
        super().__init__(Text(printable(root_label), style="bold"), **kwargs)
        self.series_nodes: dict[str, TreeNode[NodeData]] = {}
        self.series_by_key: dict[str, Series] = {}
        self.problem_nodes: dict[str, TreeNode[NodeData]] = {}
        self.guide_depth = 2
        self.show_root = False

    def show_discovery(self, discovery: Discovery) -> None:
        """Fill the tree: one node per study, one per series under it (status ``pending``)."""
        self.root.remove_children()
        self.series_nodes.clear()
        studies: dict[str, TreeNode[NodeData]] = {}
        for series in discovery.series:
            study = studies.get(series.study_uid)
            if study is None:
                study = self.root.add(
                    study_text(series), data=NodeData("study", series.study_uid), expand=True
                )
                studies[series.study_uid] = study
            node = study.add_leaf(
                series_text(series, "pending"), data=NodeData("series", series.key)
            )
            self.series_nodes[series.key] = node
            self.series_by_key[series.key] = series
        if not discovery.series:
            self.root.add_leaf(Text("no series found", style="yellow"), data=NodeData("group"))
        self.show_problem_files(discovery.files)
        self.root.expand()

    def set_series_status(self, key: str, status: str, style: str = "") -> None:
        """Rewrite one series' status (``scoring 3/40``, ``scored``, ``skipped: …``)."""
        node = self.series_nodes.get(key)
        if node is not None:
            node.set_label(series_text(self.series_by_key[key], status, style))

    def show_problem_files(self, files: list[FileRecord]) -> None:
        """(Re)build the ``unreadable files`` and ``skipped files`` nodes from file records."""
        groups = (
            ("error", "unreadable files", "red"),
            ("skipped", "skipped files", "yellow"),
        )
        for status, title, style in groups:
            records = [r for r in files if r.status == status]
            node = self.problem_nodes.pop(status, None)
            if node is not None:
                node.remove()
            if not records:
                continue
            label = Text(f"{title} ({len(records)})", style=f"bold {style}")
            group = self.root.add(label, data=NodeData("group", status), expand=status == "error")
            for record in records:
                text = Text(printable(record.relpath), style=style)
                text.append(": " + printable(record.reason), style="dim")
                group.add_leaf(text, data=NodeData("file", record.relpath))
            self.problem_nodes[status] = group

    def labels(self) -> list[str]:
        """Every node's label as plain text, depth first (for tests)."""
        out: list[str] = []

        def walk(node: TreeNode[NodeData]) -> None:
            out.append(node.label.plain)
            for child in node.children:
                walk(child)

        walk(self.root)
        return out
