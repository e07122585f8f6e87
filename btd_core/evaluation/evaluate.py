"""Scoring labelled test sets and measuring detection: what ``btd eval`` runs (runtime world).

Each :class:`~btd_core.evaluation.testset.EvalItem` is scored once:

CSV rows (patch mode)
    The file is read by content: a ``.npy`` slice in HU for a CT model (windowed with
    the model card's profile), a PNG/JPEG image (grayscale / 255) or a ``.npy`` for an
    MRI model (see :mod:`btd_core.slices.windowing`); the S x S patch centred at (x, y) is cut
    exactly as ``btd scan --patch-at`` does
    (:func:`~btd_core.slices.tiling.centred_patch_origin` and
    :func:`~btd_core.slices.tiling.crop_patch`).
Folder items (whole slice)
    Read, windowed and tiled as ``btd scan`` does; with series context (the default
    slice score with a calibration that has it), each slice is judged with its
    neighbours in its series, as ``btd scan`` judges it (so eval measures the default,
    and gives the same score as a scan of that folder).

Either way the score is the slice score asked for
(:class:`btd_core.scoring.strategy.SliceScore`: by default ``auto``, as ``btd scan``),
over the one patch or over the whole slice.

Memory stays small: files are read one at a time, each once however many rows point
at it, and only S x S patches wait for the next batch.  A row that cannot be scored
becomes an ``error`` row with a reason, never an exception.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from btd_core.engine.scorer import Scorer
from btd_core.errors import BtdError
from btd_core.evaluation import metrics
from btd_core.evaluation.testset import EvalItem
from btd_core.scoring.series_context import Finished, SeriesStream
from btd_core.scoring.strategy import SliceScore, SliceVerdict, resolve_slice_score
from btd_core.scoring.tiles import ImageScores, ScanSettings, score_image
from btd_core.slices.profiles import ModalityProfile
from btd_core.slices.tiling import centred_patch_origin, crop_patch
from btd_core.slices.windowing import modality_mismatch, to_model_range
from btd_core.study.discovery import IMAGE_MAGIC, NPY_MAGIC
from btd_core.study.file_access import open_regular_file, read_npy_header, short_message
from btd_core.study.pixels import SliceReadError, read_slice
from btd_core.study.records import Series, SliceRef

ALL_SETS = "all"
"""Name of the pooled row of the metrics (every scored image once)."""

FPR_LIMITS = (0.01, 0.05)
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff"})
FILE_KINDS_FOR_MODEL = {"ct": ("npy",), "mri": ("image", "npy")}
"""Which file kinds each model's CSV rows may point at: CT in HU as ``.npy`` (the public
sets' convention), MRI as images (public sets) or ``.npy`` (``btd tamper``)."""
KIND_WORDS = {"npy": ".npy array", "image": "PNG/JPEG/TIFF image"}

ProgressCallback = Callable[[int, int], None]
"""Called with (items done, items in all) after each file."""


class EvalError(BtdError, RuntimeError):
    """The evaluation cannot run at all (modality mismatch, nothing to score)."""


@dataclass(frozen=True)
class ItemScore:
    """One item's outcome: ``status`` ``"ok"`` (with ``score``), ``"error"`` (``reason``
    says why) or ``"skipped"`` (a whole slice with no tile holding body)."""

    item: EvalItem
    score: float | None
    status: str
    reason: str = ""


@dataclass(frozen=True)
class SetMetrics:
    """Detection metrics of one set; the four rates are ``None`` when a class is missing.

    ``auroc``, ``average_precision`` and the TPR values are in [0, 1] (see
    :mod:`btd_core.evaluation.metrics`); ``note`` says why metrics are missing.
    """

    set_name: str
    n_genuine: int
    n_tampered: int
    auroc: float | None
    average_precision: float | None
    tpr_at_1pct_fpr: float | None
    tpr_at_5pct_fpr: float | None
    note: str = ""


@dataclass
class EvalResult:
    """Every item's score, the metrics per set (then ``"all"``), and the ROC curves
    ``{set: (fpr, tpr, auroc)}`` of the sets that have both classes."""

    rows: list[ItemScore]
    metrics: list[SetMetrics]
    curves: dict[str, tuple[np.ndarray, np.ndarray, float]] = field(default_factory=dict)

    @property
    def rows_failed(self) -> int:
        """Rows with status ``error``."""
        return sum(1 for row in self.rows if row.status == "error")


def check_modality(items: Sequence[EvalItem], profile: ModalityProfile) -> None:
    """Stop before scoring when the items do not fit the model's modality.

    CSV rows must point at ``.npy`` files for a CT model and at images for an MRI model
    (judged by the file name's suffix; other suffixes are judged by content later);
    DICOM series of folder items must carry the model's (0008,0060) Modality.
    """
    wanted = FILE_KINDS_FOR_MODEL.get(profile.name, ())
    wrong: list[EvalItem] = []
    for item in items:
        if item.series is not None:
            problem = modality_mismatch(item.series, profile)
            if problem:
                raise EvalError(f"{item.shown_path}: {problem}")
        elif item.csv_path is not None and _kind_by_suffix(item.path) not in ("", *wanted):
            wrong.append(item)
    if wrong:
        first = wrong[0]
        found = KIND_WORDS[_kind_by_suffix(first.path)]
        raise EvalError(
            f"{len(wrong)} of {len(items)} rows point at a {found}, but the model is a "
            f"{profile.name.upper()} scorer (the public {profile.name.upper()} sets store "
            f"{' or '.join(KIND_WORDS[k] for k in wanted)} files); first: "
            f"{first.shown_path} ({first.csv_path}, row {first.row_number}). "
            "Use the model of the test set's modality."
        )


def evaluate(
    items: Sequence[EvalItem],
    scorer: Scorer,
    settings: ScanSettings | None = None,
    chunk_size: int = 256,
    on_progress: ProgressCallback | None = None,
    slice_score: SliceScore | None = None,
) -> EvalResult:
    """Score every item and compute the metrics per set and pooled (``"all"``).

    Parameters
    ----------
    items:
        From :mod:`btd_core.evaluation.testset`; checked with :func:`check_modality` first.
    scorer:
        The ONNX scorer; its model card decides windowing and patch size S.
    settings:
        Tiling of whole-slice items (default :class:`ScanSettings`: stride S/2, body mask).
    chunk_size:
        Patches collected before one call of :meth:`Scorer.score` (which batches again).
    on_progress:
        See :data:`ProgressCallback`.
    slice_score:
        How a patch's or slice's scored tiles become its score; default ``auto`` for
        the scorer's model (calibrated with its sidecar calibration, else local).

    Raises
    ------
    EvalError
        No items, or items of another modality than the model's.
    """
    if not items:
        raise EvalError("nothing to evaluate: no rows or slices were found")
    check_modality(items, scorer.card.profile)
    if slice_score is None:
        slice_score = resolve_slice_score(
            model_path=scorer.model_path, model_sha256=scorer.model_sha256
        )
    settings = (settings or ScanSettings()).resolved(scorer.card, slice_score.calibrated_with)
    run = _Scoring(scorer, settings, slice_score, max(chunk_size, 1))
    groups: dict[tuple[Path, int | None, bool], list[int]] = {}
    series_runs: dict[int, list[int]] = {}
    for index, item in enumerate(items):
        if item.problem:
            run.outcome[index] = ItemScore(item, None, "error", item.problem)
        elif slice_score.uses_context and item.series is not None and item.x is None:
            series_runs.setdefault(id(item.series), []).append(index)
        else:
            groups.setdefault((item.path, item.frame, item.x is None), []).append(index)
    done = len(run.outcome)
    work = [(run.score_file, indices) for indices in groups.values()]
    work += [(run.score_series, indices) for indices in series_runs.values()]
    for score, indices in work:
        score([items[i] for i in indices], indices)
        done += len(indices)
        if on_progress is not None:
            on_progress(done, len(items))
    run.flush()
    rows = [run.outcome[i] for i in range(len(items))]
    set_metrics, curves = compute_metrics(rows)
    return EvalResult(rows=rows, metrics=set_metrics, curves=curves)


def compute_metrics(
    rows: Sequence[ItemScore],
) -> tuple[list[SetMetrics], dict[str, tuple[np.ndarray, np.ndarray, float]]]:
    """Metrics of each set (in order of first appearance), then ``"all"``: every scored
    image once (the same file, slice, patch and label in several sets counts once)."""
    by_set: dict[str, list[ItemScore]] = {}
    pooled: dict[tuple[object, ...], ItemScore] = {}
    for row in rows:
        by_set.setdefault(row.item.set_name, [])
        if row.status == "ok":
            by_set[row.item.set_name].append(row)
            item = row.item
            pooled.setdefault((item.path, item.frame, item.x, item.y, item.label), row)
    by_set[ALL_SETS] = list(pooled.values())
    results: list[SetMetrics] = []
    curves: dict[str, tuple[np.ndarray, np.ndarray, float]] = {}
    for name, scored in by_set.items():
        labels = np.array([r.item.label for r in scored], dtype=np.int8)
        scores = np.array([r.score for r in scored], dtype=np.float64)
        n_tampered = int(labels.sum())
        n_genuine = len(labels) - n_tampered
        try:
            fpr, tpr, _ = metrics.roc_curve(labels, scores)
        except ValueError as err:
            results.append(
                SetMetrics(name, n_genuine, n_tampered, None, None, None, None, str(err))
            )
            continue
        area = metrics.auroc(labels, scores)
        curves[name] = (fpr, tpr, area)
        results.append(
            SetMetrics(
                set_name=name,
                n_genuine=n_genuine,
                n_tampered=n_tampered,
                auroc=area,
                average_precision=metrics.average_precision(labels, scores),
                tpr_at_1pct_fpr=metrics.tpr_at_fpr(labels, scores, FPR_LIMITS[0]),
                tpr_at_5pct_fpr=metrics.tpr_at_fpr(labels, scores, FPR_LIMITS[1]),
            )
        )
    return results, curves


class _Scoring:
    """State of one evaluation: results by item index, and patches waiting for a batch."""

    def __init__(
        self, scorer: Scorer, settings: ScanSettings, slice_score: SliceScore, chunk_size: int
    ) -> None:
        self.scorer = scorer
        self.settings = settings
        self.slice_score = slice_score
        self.chunk_size = chunk_size
        self.size = scorer.card.patch_size
        self.outcome: dict[int, ItemScore] = {}
        self.items: dict[int, EvalItem] = {}
        self.patches: list[np.ndarray] = []
        self.owners: list[list[int]] = []

    def score_file(self, items: list[EvalItem], indices: list[int]) -> None:
        """Read one file (or slice) once and score every item pointing at it."""
        first = items[0]
        try:
            image = self._read(first)
        except (SliceReadError, OSError, ValueError) as err:
            reason = short_message(err, limit=300)
            for index, item in zip(indices, items, strict=True):
                self.outcome[index] = ItemScore(item, None, "error", reason)
            return
        if first.x is None or first.y is None:
            self._score_whole(image, items, indices)
            return
        patch_of: dict[tuple[int, int], int] = {}
        for index, item in zip(indices, items, strict=True):
            assert item.x is not None and item.y is not None
            height, width = image.shape
            if item.x >= width or item.y >= height:
                reason = (
                    f"patch centre x={item.x}, y={item.y} lies outside the "
                    f"{width}x{height} slice (x < {width}, y < {height})"
                )
                self.outcome[index] = ItemScore(item, None, "error", reason)
                continue
            self.items[index] = item
            key = (item.x, item.y)
            if key not in patch_of:
                patch_of[key] = len(self.patches)
                oy, ox = centred_patch_origin(item.y, item.x, self.size)
                self.patches.append(crop_patch(image, oy, ox, self.size))
                self.owners.append([])
            self.owners[patch_of[key]].append(index)
        if len(self.patches) >= self.chunk_size:
            self.flush()

    def flush(self) -> None:
        """Score the waiting patches."""
        if not self.patches:
            return
        windows = self.slice_score.uses_windows
        scored = self.scorer.score(np.stack(self.patches), with_residuals=windows)
        for i, owners in enumerate(self.owners):
            score: float | None = float(scored.scores[i])
            if windows:
                assert scored.residuals is not None
                patch = ImageScores(
                    origins=[(0, 0)],
                    scores=scored.scores[i : i + 1],
                    residuals=scored.residuals[i : i + 1],
                    tiles_skipped=0,
                    tile_size=self.size,
                    stride=self.size,
                )
                verdict = self.slice_score.judge("", 0, self.patches[i], patch)
                score = None if verdict is None else verdict.result.score
            for index in owners:
                item = self.items.pop(index)
                if score is None:
                    reason = "not scored: no window of the patch lies in tissue"
                    self.outcome[index] = ItemScore(item, None, "skipped", reason)
                else:
                    self.outcome[index] = ItemScore(item, score, "ok")
        self.patches, self.owners = [], []

    def score_series(self, items: list[EvalItem], indices: list[int]) -> None:
        """Whole slices of one series (in its order), each judged with its neighbours as
        ``btd scan`` judges it (:class:`btd_core.scoring.series_context.SeriesStream`)."""
        series = items[0].series
        assert series is not None
        position = {(ref.path, ref.frame): k for k, ref in enumerate(series.slices)}

        def finish(done: Finished[tuple[int, EvalItem] | None]) -> None:
            if done.payload is not None:
                index, item = done.payload
                self._record_whole(done.judged, [item], [index])

        stream: SeriesStream[tuple[int, EvalItem] | None] = SeriesStream(self.slice_score, finish)
        for index, item in zip(indices, items, strict=True):
            at = position[(item.path, item.frame)]
            try:
                image = self._read(item)
            except (SliceReadError, OSError, ValueError) as err:
                self.outcome[index] = ItemScore(item, None, "error", short_message(err, limit=300))
                stream.push(series, at, None, None)
                continue
            scores = score_image(image, self.scorer, self.settings)
            stream.push(
                series, at, self.slice_score.judge(series.key, at, image, scores), (index, item)
            )
        stream.flush()

    def _score_whole(self, image: np.ndarray, items: list[EvalItem], indices: list[int]) -> None:
        scores = score_image(image, self.scorer, self.settings)
        self._record_whole(self.slice_score.judge("", 0, image, scores), items, indices)

    def _record_whole(
        self, verdict: SliceVerdict | None, items: list[EvalItem], indices: list[int]
    ) -> None:
        for index, item in zip(indices, items, strict=True):
            if verdict is None:
                reason = "not scored: every tile or window is air/background (body mask)"
                self.outcome[index] = ItemScore(item, None, "skipped", reason)
            else:
                self.outcome[index] = ItemScore(item, verdict.result.score, "ok")

    def _read(self, item: EvalItem) -> np.ndarray:
        """The item's slice windowed to [0, 1] (see the module docstring)."""
        profile = self.scorer.card.profile
        if item.series is not None and item.ref is not None:
            pixels = read_slice(item.series, item.ref)
            return to_model_range(pixels, item.series, item.ref, profile)
        kind = _kind_by_content(item.path)
        wanted = FILE_KINDS_FOR_MODEL.get(profile.name, ())
        if kind not in wanted:
            found = KIND_WORDS.get(kind, "neither a .npy array nor a PNG/JPEG/TIFF image")
            needed = " or ".join(KIND_WORDS[k] for k in wanted)
            raise SliceReadError(
                f"the file is a {found}; the {profile.name.upper()} model needs a {needed}"
            )
        if kind == "npy":
            _check_npy_frame(item.path, item.frame)
        series, ref = Series(key="", kind=kind), SliceRef(item.path, frame=item.frame)
        return to_model_range(read_slice(series, ref), series, ref, profile)


def _kind_by_suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    return "npy" if suffix == ".npy" else "image" if suffix in IMAGE_SUFFIXES else ""


def _kind_by_content(path: Path) -> str:
    try:
        with open_regular_file(path) as fp:
            head = fp.read(132)
    except OSError as err:
        raise SliceReadError(f"cannot open the file: {short_message(err)}") from err
    if head.startswith(NPY_MAGIC):
        return "npy"
    return "image" if head.startswith(IMAGE_MAGIC) else ""


def _check_npy_frame(path: Path, frame: int | None) -> None:
    """A 3-D array needs a slice index inside it (the CSV's ``slice`` or ``z`` column)."""
    with open_regular_file(path) as fp:
        try:
            shape = read_npy_header(fp)[0]
        except ValueError as err:
            raise SliceReadError(f"not a valid .npy file: {short_message(err)}") from err
    if len(shape) == 3 and frame is None:
        raise SliceReadError(
            f"3-D array of shape {shape}: add a 'slice' (or 'z') column naming the slice"
        )
    if len(shape) == 3 and frame is not None and frame >= shape[0]:
        raise SliceReadError(f"slice {frame} is outside the volume's {shape[0]} slices")
