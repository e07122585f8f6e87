"""Labelled test sets for ``btd eval``: the public BTD layout, any CSV like it, folder pairs.

The public test sets (Kaggle "btd-mri-and-ct-deepfake-test-sets") are laid out as::

    CT/injection/CT_injection.csv    CT/removal/CT_removal.csv
    MRI/MRI_injection.csv            MRI/MRI_removal.csv

Each CSV row is one patch: ``path`` (a ``.npy`` CT slice in HU or an 8-bit MRI image,
relative to the CSV's folder or to the test-set root), ``x``/``y`` (the patch centre:
column, row, pixels) and ``type`` (the label).  Columns named like
``CTGAN-CT-injection`` / ``SD-CT-removal`` flag (value 1) the set(s) a row belongs to;
a row flagged for none belongs to the CSV's own set (``CT-injection``, ``MRI-removal``,
...) or to the one its optional ``set`` / ``method`` column names.  Column names are
matched case-insensitively after stripping; other columns are ignored.

The values of ``type`` are not documented, so they are never guessed: the user maps
them (:func:`parse_label_options`), and a value left unmapped stops the run with every
distinct value listed (:class:`UnmappedLabelsError`).
"""

from __future__ import annotations

import csv
import math
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from btd_core.errors import BtdError
from btd_core.study.discovery import discover
from btd_core.study.records import Series, SliceRef

PUBLIC_CSV_NAMES = ("ct_injection.csv", "ct_removal.csv", "mri_injection.csv", "mri_removal.csv")
"""The four CSV files of the public layout (names compared case-insensitively)."""

FLAG_COLUMN = re.compile(r"^[a-z0-9_]+-(ct|mri|mr)-(injection|removal)$", re.IGNORECASE)
"""A set-flag column such as ``CTGAN-CT-injection`` or ``SD-MRI-removal``."""

REQUIRED_COLUMNS = ("path", "x", "y", "type")
SLICE_COLUMNS = ("slice", "z")
SET_COLUMNS = ("set", "method")
LABEL_NAMES = {"tampered": 1, "genuine": 0}
_CLASS = {1: "tampered", 0: "genuine"}


class TestSetError(BtdError, ValueError):
    """The test set cannot be read at all (missing columns, no CSV, bad option)."""

    __test__ = False  # not a pytest test class


class UnmappedLabelsError(TestSetError):
    """Label values with no ``--label`` mapping; ``counts`` holds every distinct value."""

    def __init__(self, counts: Counter[str], mapping: dict[str, int]) -> None:
        self.counts = counts
        lines = [
            f"  {value!r}: {n} row{'s' if n != 1 else ''}"
            + ("" if value not in mapping else f" (mapped to {_CLASS[mapping[value]]})")
            for value, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        ]
        unmapped = sorted(v for v in counts if v not in mapping)
        super().__init__(
            f"{len(unmapped)} label value(s) of the 'type' column are not mapped: "
            f"{', '.join(repr(v) for v in unmapped)}. Values found (rows):\n"
            + "\n".join(lines)
            + "\nMap every value, e.g. --label tampered=VALUE,... --label genuine=VALUE,..."
        )


@dataclass(frozen=True)
class EvalItem:
    """One labelled image (or patch of one) to score.

    Attributes
    ----------
    set_name:
        The test set it belongs to, e.g. ``"CTGAN-CT-injection"`` (text from a file: data).
    path:
        The file (absolute); for a missing file, the first place it was looked for.
    x, y:
        Patch centre, column and row in pixels; ``None`` = score the whole slice
        (maximum tile score, as ``btd scan`` does).
    label:
        1 = tampered, 0 = genuine.
    row_number:
        The CSV row as a spreadsheet numbers it (header = 1, first data row = 2); for
        folder items, the slice's position in the discovery (1-based).
    csv_path:
        The CSV the row comes from; ``None`` for folder items.
    raw_label:
        The label text as found (``"genuine"`` / ``"tampered"`` for folder items).
    shown_path:
        The path as written in the CSV (relative to the folder for folder items).
    frame:
        Slice index in a 3-D ``.npy`` (``slice``/``z`` column) or frame of a multi-frame file.
    problem:
        Why the item cannot be scored (file missing, bad coordinates); ``""`` when fine.
    series, ref:
        For folder items: the discovered series and slice (used for windowing).
    """

    set_name: str
    path: Path
    x: int | None
    y: int | None
    label: int
    row_number: int
    csv_path: Path | None
    raw_label: str = ""
    shown_path: str = ""
    frame: int | None = None
    problem: str = ""
    series: Series | None = field(default=None, compare=False, repr=False)
    ref: SliceRef | None = field(default=None, compare=False, repr=False)


def parse_label_options(options: Sequence[str]) -> dict[str, int]:
    """``["tampered=FAKE,fake", "genuine=REAL"]`` -> ``{"FAKE": 1, "fake": 1, "REAL": 0}``.

    Values are compared exactly (after stripping spaces), so ``FAKE`` and ``fake`` are
    different values.  Raises :class:`TestSetError` for a bad option or a value mapped
    to both classes.
    """
    mapping: dict[str, int] = {}
    for option in options:
        name, sep, values = option.partition("=")
        name = name.strip().lower()
        if not sep or name not in LABEL_NAMES:
            raise TestSetError(
                f"--label {option!r}: expected tampered=VALUE[,VALUE...] or genuine=VALUE[,...]"
            )
        for value in (v.strip() for v in values.split(",")):
            if not value:
                raise TestSetError(f"--label {option!r}: empty label value")
            if mapping.get(value, LABEL_NAMES[name]) != LABEL_NAMES[name]:
                raise TestSetError(f"label value {value!r} is mapped to both tampered and genuine")
            mapping[value] = LABEL_NAMES[name]
    return mapping


def find_csvs(root: Path, modality: str | None = None) -> list[Path]:
    """The public layout's CSV files under ``root`` (any depth, symlinked folders not
    followed), sorted; only ``CT_*.csv`` or ``MRI_*.csv`` when ``modality`` is ``"ct"`` or
    ``"mri"``.  Raises :class:`TestSetError` when there are none."""
    if not root.is_dir():
        raise TestSetError(f"test-set folder not found: {root}")
    found = sorted(
        Path(folder) / name
        for folder, _, names in os.walk(root)
        for name in names
        if name.lower() in PUBLIC_CSV_NAMES
    )
    wanted = [p for p in found if modality is None or p.name.lower().startswith(f"{modality}_")]
    if not wanted:
        kind = f"{modality.upper()} " if modality else ""
        others = f" (found only {', '.join(p.name for p in found)})" if found else ""
        raise TestSetError(
            f"no {kind}test-set CSV under {root}{others}: expected CT/injection/"
            "CT_injection.csv, CT/removal/CT_removal.csv, MRI/MRI_injection.csv or "
            "MRI/MRI_removal.csv (use --csv FILE for another CSV)"
        )
    return wanted


def discover_sets(
    root: Path, label_map: dict[str, int], modality: str | None = None
) -> list[EvalItem]:
    """Every row of the public layout under ``root`` as :class:`EvalItem` records; with
    ``modality`` (``"ct"``/``"mri"``, the model's) only that modality's CSVs are read.

    Raises :class:`UnmappedLabelsError` (listing every distinct label value over the CSVs
    read) or :class:`TestSetError`; a row whose file is missing becomes an item with a
    ``problem``.
    """
    return read_csvs(find_csvs(root, modality), label_map, root=root)


def read_csvs(
    csv_paths: Iterable[Path], label_map: dict[str, int], root: Path | None = None
) -> list[EvalItem]:
    """Items of several CSVs; label values are checked over all of them before returning."""
    items: list[EvalItem] = []
    counts: Counter[str] = Counter()
    for csv_path in csv_paths:
        items.extend(read_csv(csv_path, label_map, root=root, counts=counts))
    if any(value not in label_map for value in counts):
        raise UnmappedLabelsError(counts, label_map)
    return items


def read_csv(
    csv_path: Path,
    label_map: dict[str, int],
    root: Path | None = None,
    counts: Counter[str] | None = None,
) -> list[EvalItem]:
    """The rows of one CSV in the public layout (see the module docstring).

    ``path`` is looked up relative to the CSV's folder, then relative to ``root``.  Rows
    with an unmapped label are left out and counted in ``counts`` (pass a Counter and
    check it, as :func:`read_csvs` does).
    """
    try:
        with csv_path.open(encoding="utf-8-sig", errors="replace", newline="") as handle:
            rows = list(csv.reader(handle))
    except OSError as err:
        raise TestSetError(f"cannot read {csv_path}: {err.strerror or err}") from err
    if not rows:
        raise TestSetError(f"{csv_path} is empty (no header row)")
    columns: dict[str, int] = {}
    for i, name in enumerate(rows[0]):
        columns.setdefault(name.strip().lower(), i)
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise TestSetError(f"{csv_path} lacks the column(s): {', '.join(missing)}")
    flags = [(h.strip(), i) for i, h in enumerate(rows[0]) if FLAG_COLUMN.match(h.strip())]
    own_set = csv_path.stem.replace("_", "-")
    counts = Counter() if counts is None else counts
    items: list[EvalItem] = []
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        cells = {name: row[i].strip() for name, i in columns.items() if i < len(row)}
        raw_label = cells.get("type", "")
        counts[raw_label] += 1
        if raw_label not in label_map:
            continue
        sets = [name for name, i in flags if i < len(row) and _flag_set(row[i])]
        named = next((cells[c] for c in SET_COLUMNS if cells.get(c)), "")
        written = cells.get("path", "")
        path, problem = _locate(written, csv_path.parent, root)
        z = next((cells[c] for c in SLICE_COLUMNS if cells.get(c)), "")
        x, y, frame, coord_problem = _coordinates(cells.get("x", ""), cells.get("y", ""), z)
        for set_name in sets or [named or own_set]:
            items.append(
                EvalItem(
                    set_name=set_name,
                    path=path,
                    x=x,
                    y=y,
                    label=label_map[raw_label],
                    row_number=number,
                    csv_path=csv_path,
                    raw_label=raw_label,
                    shown_path=written,
                    frame=frame,
                    problem=problem or coord_problem,
                )
            )
    return items


def folder_pair(genuine_dir: Path, tampered_dir: Path, set_name: str = "folders") -> list[EvalItem]:
    """Whole-slice items: every slice found under ``genuine_dir`` is label 0, every slice
    under ``tampered_dir`` label 1 (files found by content with :func:`discover`).

    Files that discovery could not read become items with a ``problem``; skipped files
    (not images) are left out.
    """
    items: list[EvalItem] = []
    for folder, label, raw in ((genuine_dir, 0, "genuine"), (tampered_dir, 1, "tampered")):
        try:
            found = discover(folder, hash_files=False)
        except NotADirectoryError as err:
            raise TestSetError(str(err)) from err
        blank = EvalItem(set_name, folder, None, None, label, 0, None, raw_label=raw)
        for series in found.series:
            for ref in series.slices:
                rel = ref.path.relative_to(found.root).as_posix()
                where = dict(row_number=len(items) + 1, shown_path=f"{folder.name}/{rel}")
                found_slice = dict(path=ref.path, frame=ref.frame, series=series, ref=ref)
                items.append(replace(blank, **found_slice, **where))
        for record in (r for r in found.files if r.status == "error"):
            where = dict(row_number=len(items) + 1, shown_path=f"{folder.name}/{record.relpath}")
            items.append(replace(blank, path=record.path, problem=record.reason, **where))
    return items


def _flag_set(value: str) -> bool:
    """Whether a flag cell says "this row belongs to the set": 1, 1.0, true, yes."""
    text = value.strip().lower()
    if text in ("true", "yes"):
        return True
    try:
        return float(text) == 1.0
    except ValueError:
        return False


def _locate(written: str, csv_folder: Path, root: Path | None) -> tuple[Path, str]:
    """The file ``written`` in the CSV: relative to the CSV's folder, else to ``root``."""
    if not written:
        return csv_folder, "the 'path' cell is empty"
    variants = [written] if "\\" not in written else [written, written.replace("\\", "/")]
    bases = [csv_folder] + ([root] if root is not None and root != csv_folder else [])
    tried = [(base / v).absolute() for v in variants for base in bases]
    for candidate in tried:
        if candidate.is_file():
            return candidate, ""
    places = " nor ".join(str(base) for base in bases)
    return tried[0], f"file not found: {written} (neither in {places})"


def _coordinates(x: str, y: str, z: str) -> tuple[int | None, int | None, int | None, str]:
    """Integer x, y (and slice index z when given), or a problem text."""
    values: list[int | None] = []
    for name, text in (("x", x), ("y", y), ("slice", z)):
        if name == "slice" and not text:
            values.append(None)
            continue
        try:
            number = float(text)
        except ValueError:
            return None, None, None, f"{name} is not a number: {text!r}"
        if not math.isfinite(number) or number != round(number) or number < 0:
            return None, None, None, f"{name} must be a whole number >= 0, got {text!r}"
        values.append(int(number))
    return values[0], values[1], values[2], ""
