"""The scan pipeline: slices prepared by worker threads, tiles packed into full batches
across slices, results and progress in study order, the same numbers as slice by slice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from btd_core.audit.pipeline import ScanProgress, scan
from btd_core.engine.scorer import PatchScores, Scorer
from btd_core.scoring.strategy import TileScore
from btd_core.scoring.tiles import ScanSettings, score_image
from btd_core.slices.windowing import to_model_range
from btd_core.study.discovery import discover
from btd_core.study.pixels import read_slice
from tests.support.fixed_study import write_fixed_series, write_tiny_scorer


class CallLog:
    """The real scorer, with a record of how many patches each call got."""

    def __init__(self, scorer: Scorer) -> None:
        self._scorer = scorer
        self.card = scorer.card
        self.batch_size = scorer.batch_size
        self.calls: list[int] = []

    def score(self, patches: np.ndarray, with_residuals: bool = False) -> PatchScores:
        self.calls.append(len(patches))
        return self._scorer.score(patches, with_residuals=with_residuals)


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pipeline") / "study"
    write_fixed_series(root / "a", 5, series_number=1, planted_index=3)
    write_fixed_series(root / "b", 3, series_number=2)
    (root / "broken.dcm").write_bytes(b"DICM" * 10)
    return root


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_scorer(tmp_path_factory.mktemp("tiny") / "tiny.onnx")


def test_tiles_of_several_slices_share_full_batches(study: Path, tiny: Path):
    scorer = CallLog(Scorer(tiny, provider="cpu", batch_size=7))
    settings = ScanSettings(stride=16)  # 128 px slices: 3 x 3 = 9 tiles of 96 px each
    tile = TileScore()
    outcome = scan(discover(study), scorer, settings, slice_score=tile)  # type: ignore[arg-type]
    assert outcome.tiles_scored == 8 * 9
    assert sum(scorer.calls) == 72
    assert all(n == 7 for n in scorer.calls[:-1])  # full batches spanning slice edges
    assert any(n == 7 for n in scorer.calls) and len(scorer.calls) < 8 * 2


def test_packed_scan_gives_the_numbers_of_slice_by_slice_scoring(study: Path, tiny: Path):
    discovery = discover(study)
    real = Scorer(tiny, provider="cpu", batch_size=5)
    settings = ScanSettings(stride=16, overlays=8)
    outcome = scan(discovery, real, settings, slice_score=TileScore())
    by_key = {(r.series_key, r.slice_index): r for r in outcome.results}
    assert len(by_key) == 8
    for series in discovery.series:
        for index, ref in enumerate(series.slices):
            image = to_model_range(read_slice(series, ref), series, ref, real.card.profile)
            direct = score_image(image, real, settings)
            result = by_key[(series.key, index)]
            assert result.score == pytest.approx(float(direct.scores.max()), rel=1e-6)
            assert (result.tile_y, result.tile_x) == direct.origins[int(direct.scores.argmax())]
            view = outcome.views[(series.key, index)]
            assert np.allclose(view.heat, direct.heat_map(image.shape), rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("workers", [1, 4])
def test_progress_comes_in_study_order_whatever_the_workers(study: Path, tiny: Path, workers: int):
    discovery = discover(study)
    seen: list[ScanProgress] = []
    settings = ScanSettings(stride=16, workers=workers)
    outcome = scan(discovery, Scorer(tiny, provider="cpu", batch_size=4), settings, seen.append)
    order = [
        (s.key, i) for s in discovery.series for i in range(len(s.slices))
    ]  # the study's own order
    reported = [(p.result.series_key, p.result.slice_index) for p in seen if p.result]
    assert reported == order
    assert [p.slices_done for p in seen] == list(range(1, len(order) + 1))
    assert {r.status for r in discovery.files if r.path.name != "broken.dcm"} == {"scored"}
    broken = next(r for r in discovery.files if r.path.name == "broken.dcm")
    assert broken.status == "error"
    assert outcome.slices_done == outcome.slices_total == len(order)


def test_cancel_stops_early_and_leaves_the_rest_pending_as_skipped(study: Path, tiny: Path):
    discovery = discover(study)
    seen: list[ScanProgress] = []
    outcome = scan(
        discovery,
        Scorer(tiny, provider="cpu", batch_size=4),
        ScanSettings(stride=16, workers=2),
        seen.append,
        should_stop=lambda: len(seen) >= 3,
    )
    assert outcome.cancelled
    assert 3 <= outcome.slices_done < outcome.slices_total
    skipped = [r for r in discovery.files if r.status == "skipped"]
    assert skipped and all("cancelled" in r.reason for r in skipped)
