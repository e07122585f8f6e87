"""Series context in one place: the stream (scan, eval) and random access (previews,
benchmarks) judge every slice alike, with real slices, a real scorer and a real
calibration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from btd_core.audit.calibrate import calibrate_model
from btd_core.audit.pipeline import scan
from btd_core.audit.study_audit import open_study
from btd_core.scoring.series_context import (
    Finished,
    SeriesContext,
    SeriesStream,
    neighbour_indices,
)
from btd_core.scoring.strategy import SliceVerdict, resolve_slice_score
from btd_core.scoring.tiles import ScanSettings, score_image
from btd_core.slices.profiles import CT
from tests.support.real_ct import shifted_hu_series


@pytest.fixture(scope="module")
def calibrated(ct_onnx: Path, tmp_path_factory: pytest.TempPathFactory):
    """The test scorer with a calibration made on genuine shifted slices, and a study of
    six slices with noise planted in slice 3; returns (slice score, scorer, study dir)."""
    root = tmp_path_factory.mktemp("series_context")
    genuine = root / "genuine"
    genuine.mkdir()
    np.save(genuine / "genuine.npy", shifted_hu_series(8))
    calibration = root / "ct.calibration.json"
    calibrate_model(genuine, ct_onnx, calibration, provider="cpu")
    study = root / "study"
    study.mkdir()
    np.save(study / "series.npy", shifted_hu_series(6, planted=3))
    _, scorer = open_study(study, ct_onnx, "cpu")
    score = resolve_slice_score(
        "calibrated",
        model_path=ct_onnx,
        model_sha256=scorer.model_sha256,
        calibration_path=calibration,
    )
    assert score.uses_context and score.uses_image_context
    return score, scorer, study


def _own_verdicts(score, scorer, images: np.ndarray) -> dict[int, SliceVerdict | None]:
    settings = ScanSettings()
    return {
        i: score.judge("s", i, image, score_image(image, scorer, settings))
        for i, image in enumerate(images)
    }


def test_neighbours_are_both_sides_else_two_on_the_side_that_has_them():
    five = set(range(5)).__contains__
    assert neighbour_indices(2, five) == [1, 3]
    assert neighbour_indices(0, five) == [1, 2]
    assert neighbour_indices(4, five) == [3, 2]
    assert neighbour_indices(3, {0, 1, 2, 3}.__contains__) == [2, 1]


def test_stream_and_random_access_judge_every_slice_alike_also_next_to_a_gap(calibrated):
    score, scorer, _ = calibrated
    images = CT.to_unit_range(shifted_hu_series(6, planted=3))
    own = _own_verdicts(score, scorer, images)
    own[1] = None  # an unreadable slice: its neighbours look past it
    finished: list[Finished[int]] = []
    stream: SeriesStream[int] = SeriesStream(score, finished.append)
    for i in range(6):
        stream.push("series", i, own[i], i)
    stream.flush()
    assert [f.payload for f in finished] == list(range(6))  # in order, each once
    context = SeriesContext(score, own.get)
    for done in finished:
        i = done.payload
        expected = context.judged(i)
        if own[i] is None:
            assert done.judged is None and expected is None
            continue
        assert done.judged is not None and expected is not None
        assert done.judged.result == expected.result
        assert done.neighbours == context.neighbours(i)
        if done.neighbours:
            assert done.judged.result != own[i].result  # context changed the score
        else:
            assert done.judged is own[i]  # nothing to compare with: judged alone
    assert not context.neighbours(0)  # its next slice is unreadable: no side has two
    assert [n.result.slice_index for n in context.neighbours(2)] == [3, 4]
    assert [n.result.slice_index for n in context.neighbours(5)] == [4, 3]
    # one side: nearest first, judged against the trend of the two (an end, or past a gap)
    assert context.neighbours(2).one_sided and context.neighbours(5).one_sided
    assert not context.neighbours(3).one_sided and not context.neighbours(0).one_sided
    best = max((f for f in finished if f.judged), key=lambda f: f.judged.result.score)
    assert best.payload == 3  # the planted slice leads


def test_the_scan_pipeline_reports_what_random_access_judges(calibrated):
    score, scorer, study = calibrated
    discovery, _ = open_study(study, scorer.model_path, "cpu")
    outcome = scan(discovery, scorer, ScanSettings(), slice_score=score)
    (series,) = discovery.series
    images = CT.to_unit_range(shifted_hu_series(6, planted=3))
    own = {
        i: score.judge(series.key, i, image, score_image(image, scorer, ScanSettings()))
        for i, image in enumerate(images)
    }
    context = SeriesContext(score, own.get)
    by_index = {r.slice_index: r for r in outcome.results}
    assert sorted(by_index) == list(range(6))
    for i in range(6):
        judged = context.judged(i)
        assert judged is not None
        assert by_index[i].score == pytest.approx(judged.result.score, rel=1e-6)
        assert (by_index[i].window_x, by_index[i].window_y) == (
            judged.result.window_x,
            judged.result.window_y,
        )


def test_a_slice_score_without_context_lets_each_slice_go_at_once(calibrated):
    _, scorer, _ = calibrated
    alone = resolve_slice_score("local")
    images = CT.to_unit_range(shifted_hu_series(3))
    own = _own_verdicts(alone, scorer, images)
    finished: list[Finished[int]] = []
    stream: SeriesStream[int] = SeriesStream(alone, finished.append)
    stream.push("series", 0, own[0], 0)
    assert len(finished) == 1 and finished[0].judged is own[0] and not finished[0].neighbours
    held: list[Finished[int]] = []
    calibrating: SeriesStream[int] = SeriesStream(alone, held.append, with_neighbours=True)
    for i in range(3):
        calibrating.push("series", i, own[i], i)
    assert [f.payload for f in held] == [0]  # waits for two slices after it
    calibrating.flush()
    assert [[n.result.slice_index for n in f.neighbours] for f in held] == [[1, 2], [0, 2], [1, 0]]
    assert [f.neighbours.one_sided for f in held] == [True, False, True]
    assert all(f.judged is f.own for f in held)  # judged alone: unchanged
