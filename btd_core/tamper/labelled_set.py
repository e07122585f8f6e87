"""``btd tamper``'s work: labelled test sets and tampered studies from genuine scans.

Test set (the public layout, read back by ``btd eval --csv``): for each method x
kind, ``per_set`` edits are made at a random place in the body or in the lungs (or at
a given (x, y)); an edit is one slice, or with ``depth`` > 1 a 3-D edit over that many
consecutive slices of one series (a ball, as CT-GAN tampers a volume).  Each tampered
slice and its genuine original are written as ``.npy`` (HU for CT), their masks as
``.npy``, and every pair as two rows of ``tamper.csv``:
``path, x, y, type (tampered | genuine), set, method, kind, source, frame, edit``
(``edit`` names the edit a slice belongs to: the slices of one 3-D edit share it).

Tampered study: a copy of one DICOM series with some slices tampered in place
(UIDs kept, as an attacker would), and ``truth.csv`` saying which and where.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom

from btd_core.findings.csv_table import csv_bytes
from btd_core.slices.profiles import ModalityProfile
from btd_core.slices.windowing import modality_mismatch
from btd_core.study.discovery import discover
from btd_core.study.pixels import SliceReadError, read_slice
from btd_core.study.records import Series
from btd_core.tamper.copy_move import (
    KINDS,
    Tampering,
    choose_location,
    copy_move,
    copy_move_stack,
    stack_radii,
)

METHODS = ("copy-move", "diffusion")
CSV_COLUMNS = ["path", "x", "y", "type", "set", "method", "kind", "source", "frame", "edit"]
TRUTH_COLUMNS = ["file", "slice_index", "x", "y", "radius", "method", "kind"]
NUMERIC_COLUMNS = frozenset({"x", "y", "frame", "slice_index", "radius"})

Tamperer = Callable[[np.ndarray, str, int, int, int, np.random.Generator], Tampering]


@dataclass(frozen=True)
class TamperedSet:
    """What ``make_test_set`` wrote."""

    csv_path: Path
    rows: int
    sets: dict[str, int]
    failures: list[str]


COPY_MOVE: Mapping[str, Tamperer] = {"copy-move": copy_move}
"""The tampering method that needs no model; ``diffusion`` comes from
:func:`btd_core.model.inpainting.diffusion_tamperer` (torch world), wired by the caller."""


def _tamperer(tamperers: Mapping[str, Tamperer], method: str) -> Tamperer:
    if method not in tamperers:
        known = ", ".join(METHODS)
        raise ValueError(
            f"tampering method {method!r} is not available here; methods: {known} "
            "(diffusion needs the train extra and --checkpoint)"
        )
    return tamperers[method]


def genuine_slices(data_dir: Path, profile: ModalityProfile) -> list[tuple[Series, int]]:
    """Every slice under ``data_dir`` whose series fits the modality."""
    found = discover(data_dir, hash_files=False)
    return [
        (series, i)
        for series in found.series
        if not modality_mismatch(series, profile)
        for i in range(len(series.slices))
    ]


def make_test_set(
    data_dir: Path,
    out_dir: Path,
    profile: ModalityProfile,
    *,
    per_set: int = 10,
    methods: Sequence[str] = ("copy-move",),
    kinds: Sequence[str] = KINDS,
    radius: tuple[int, int] = (8, 14),
    at: tuple[int, int] | None = None,
    tamperers: Mapping[str, Tamperer] = COPY_MOVE,
    seed: int = 0,
    place: str = "body",
    depth: int = 1,
) -> TamperedSet:
    """Write a labelled test set into ``out_dir`` (see module doc).

    ``tamperers`` maps each of ``methods`` to the function that applies it.  ``place``:
    ``body`` or ``lung`` (CT: injections in aerated lung, removals of a vessel or nodule
    there).  ``depth``: slices per edit (odd; 3-D edits need series of that many slices).
    """
    stack_radii(1, depth)  # an odd depth, or a clear error now
    slices = [
        (series, index)
        for series, index in genuine_slices(data_dir, profile)
        if depth // 2 <= index < len(series.slices) - depth // 2
    ]
    if not slices:
        raise ValueError(
            f"no usable {profile.name.upper()} slices under {data_dir}"
            + (f" with {depth // 2} slices on each side (--depth {depth})" if depth > 1 else "")
        )
    rng = np.random.default_rng(seed)
    rows: list[dict[str, object]] = []
    failures: list[str] = []
    counts: dict[str, int] = {}
    for method in methods:
        tamper = _tamperer(tamperers, method)
        for kind in kinds:
            name = f"{method}-{kind}"
            for number in range(per_set):
                series, index = slices[int(rng.integers(len(slices)))]
                refs = series.slices[index - depth // 2 : index + depth // 2 + 1]
                try:
                    stack = [read_slice(series, ref) for ref in refs]
                    r = int(rng.integers(radius[0], radius[1] + 1))
                    middle = stack[depth // 2]
                    x, y = at if at else choose_location(middle, r, rng, place=place, kind=kind)
                    done = _edit(stack, method, tamper, kind, x, y, r, rng)
                except (SliceReadError, ValueError) as err:
                    failures.append(f"{name} #{number} ({refs[depth // 2].path.name}): {err}")
                    continue
                edit = f"{name}/{number:04d}"
                edited = zip(refs, stack, done, strict=True)
                for offset, (ref, values, tampering) in enumerate(edited):
                    stem = f"{number:04d}" if depth == 1 else f"{number:04d}_{offset}"
                    common = {
                        "x": x,
                        "y": y,
                        "set": name,
                        "method": method,
                        "kind": kind,
                        "source": str(ref.path.relative_to(data_dir)),
                        "frame": "" if ref.frame is None else ref.frame,
                        "edit": edit,
                    }
                    for label, pixels in (("tampered", tampering.values), ("genuine", values)):
                        path = Path(label) / name / f"{stem}.npy"
                        (out_dir / path).parent.mkdir(parents=True, exist_ok=True)
                        np.save(out_dir / path, pixels.astype(np.float32))
                        rows.append({"path": path.as_posix(), "type": label, **common})
                    mask_path = out_dir / "masks" / name / f"{stem}.npy"
                    mask_path.parent.mkdir(parents=True, exist_ok=True)
                    np.save(mask_path, tampering.mask > 0)  # every pixel the edit touched
                counts[name] = counts.get(name, 0) + 1
    csv_path = _write_csv(out_dir / "tamper.csv", rows)
    return TamperedSet(csv_path=csv_path, rows=len(rows), sets=counts, failures=failures)


def _edit(
    stack: list[np.ndarray],
    method: str,
    tamper: Tamperer,
    kind: str,
    x: int,
    y: int,
    radius: int,
    rng: np.random.Generator,
) -> list[Tampering]:
    """One edit over ``stack`` (consecutive slices; one for a 2-D edit): copy-move copies
    every slice from one place; other methods tamper each slice at the ball's radius."""
    if len(stack) == 1:
        return [tamper(stack[0], kind, x, y, radius, rng)]
    if method == "copy-move":
        return copy_move_stack(stack, kind, x, y, radius, rng)
    radii = stack_radii(radius, len(stack))
    return [tamper(values, kind, x, y, r, rng) for values, r in zip(stack, radii, strict=True)]


def _write_csv(path: Path, rows: list[dict[str, object]]) -> Path:
    """``tamper.csv``: text cells formula- and control-character-safe, like every report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(csv_bytes(CSV_COLUMNS, rows, NUMERIC_COLUMNS))
    return path


def tamper_study(
    series: Series,
    source_root: Path,
    out_dir: Path,
    plan: Sequence[tuple[int, str, str]],
    profile: ModalityProfile,
    *,
    tamperers: Mapping[str, Tamperer] = COPY_MOVE,
    radius: int = 12,
    seed: int = 0,
    truth_path: Path | None = None,
) -> Path:
    """Copy a DICOM series into ``out_dir``, tampering slices per ``plan``; return truth.csv.

    The truth table goes to ``truth_path`` (default: ``<out_dir>_truth.csv`` beside it).

    ``plan`` lists ``(slice index, method, kind)``.  Tampered pixels are written back as
    stored values (through the slice's Rescale Slope/Intercept), UIDs unchanged.
    """
    rng = np.random.default_rng(seed)
    for method in {m for _, m, _ in plan}:
        _tamperer(tamperers, method)
    truth = []
    for index, ref in enumerate(series.slices):
        target = out_dir / ref.path.relative_to(source_root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ref.path, target)
        for planned, method, kind in plan:
            if planned != index:
                continue
            values = read_slice(series, ref)
            x, y = choose_location(values, radius, rng)
            done = tamperers[method](values, kind, x, y, radius, rng)
            _write_pixels(target, done.values, ref.rescale_slope, ref.rescale_intercept)
            truth.append(
                {
                    "file": target.relative_to(out_dir).as_posix(),
                    "slice_index": index,
                    "x": x,
                    "y": y,
                    "radius": radius,
                    "method": method,
                    "kind": kind,
                }
            )
    path = truth_path or out_dir.parent / f"{out_dir.name}_truth.csv"
    path.write_bytes(csv_bytes(TRUTH_COLUMNS, truth, NUMERIC_COLUMNS))
    return path


def _write_pixels(path: Path, values: np.ndarray, slope: float, intercept: float) -> None:
    dataset = pydicom.dcmread(path)
    if dataset.file_meta.TransferSyntaxUID.is_compressed:
        dataset.decompress()
    dtype = dataset.pixel_array.dtype
    info = np.iinfo(dtype)
    stored = np.clip(np.round((values - intercept) / slope), info.min, info.max).astype(dtype)
    dataset.PixelData = stored.tobytes()
    dataset.save_as(path, enforce_file_format=True)
