"""Calibration files are read through one explicit reader per format, and written back
byte for byte."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from btd_core.scoring.calibration import (
    FORMAT_VERSION,
    READERS,
    Calibration,
    CalibrationError,
    fit_calibration,
)


def _fitted(slices: int = 20) -> Calibration:
    rng = np.random.default_rng(5)
    return fit_calibration(
        rng.lognormal(-9, 1, 500), rng.random(500), rng.random(500) * 0.2,
        model_sha256="b" * 64, window=24, stride=12, slices=slices, energy_floor=1e-5,
        context_differences=rng.normal(0, 0.1, 500),
        image_context_ratios=rng.lognormal(-2, 1, 500),
        context_slice_maxima=rng.normal(0.6, 0.1, slices),
        image_context_slice_maxima=rng.lognormal(0.5, 0.3, slices), tiles="body",
        ends_differences=rng.normal(0.1, 0.2, 500),
        ends_slice_maxima=rng.normal(1.2, 0.3, 2 * slices),
    )  # fmt: skip


def test_every_format_up_to_the_current_one_has_a_reader():
    assert sorted(READERS) == list(range(1, FORMAT_VERSION + 1))


def test_a_saved_calibration_reads_back_equal_and_writes_the_same_bytes(tmp_path: Path):
    calibration = _fitted()
    assert calibration.context and calibration.image_context and calibration.slice_scale
    assert calibration.ends is not None and calibration.judges_ends
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    calibration.save(first)
    loaded = Calibration.load(first, "b" * 64)
    assert loaded == calibration
    loaded.save(second)
    assert first.read_bytes() == second.read_bytes()


def test_each_format_reads_only_what_it_holds(tmp_path: Path):
    path = tmp_path / "c.json"
    _fitted().save(path)
    data = json.loads(path.read_text())
    found = {}
    for version in (1, 2, 3, 4, 5):
        path.write_text(json.dumps({**data, "format_version": version}))
        found[version] = Calibration.load(path)
    # formats before 4 were all made with patch coverage
    assert [found[v].tiles for v in (1, 2, 3)] == ["patch"] * 3
    assert found[4].tiles == "body"
    assert found[1].context is None and found[1].energy_floor == 1e-12
    assert found[2].context is not None and found[2].image_context is None
    assert found[2].slice_scale is None and found[2].energy_floor == 1e-5
    assert found[3].image_context is not None and found[3].slice_scale is not None
    assert found[1].tissue == found[2].tissue == found[3].tissue
    # series ends have tables of their own from format 5 on; before, judged as before
    assert all(found[v].ends is None for v in (1, 2, 3, 4)) and found[5].ends is not None
    assert found[5] == replace(_fitted(), source=found[5].source)


def test_series_ends_need_their_own_genuine_comparisons():
    """Too few one-sided comparisons (or no series context at all) leave the ends to the
    tables of slices between their neighbours, as a format-4 file does."""
    rng = np.random.default_rng(2)
    few = replace(_fitted(), ends=None)
    assert not few.judges_ends
    fitted = fit_calibration(
        rng.lognormal(-9, 1, 500), rng.random(500), rng.random(500) * 0.2,
        model_sha256="b" * 64, window=24, stride=12, slices=3,
        context_differences=rng.normal(0, 0.1, 500),
        ends_differences=rng.normal(0.1, 0.2, 500), ends_slice_maxima=rng.normal(1, 0.3, 4),
    )  # fmt: skip
    assert fitted.context is not None and fitted.ends is None  # 4 < MIN_SLICES comparisons
    levels = np.array([[3.0, 6.0]])
    nearest, following = np.array([[2.0, 2.0]]), np.array([[1.0, 1.0]])
    ends = _fitted().ends
    assert ends is not None
    judged = _fitted().context_surprise(levels, [nearest, following], one_sided=True)
    expected = (np.array([[-1.0, 2.0]]) - ends.context.centre) / ends.context.spread
    np.testing.assert_allclose(judged, expected)  # against the trend, by the ends' table


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format_version": FORMAT_VERSION + 1}, "newer btd"),
        ({"tiles": "everywhere"}, "incomplete"),
        ({"format_version": 0}, "unknown format_version 0"),
        ({"format_version": "x"}, "no valid format_version"),
        ({"format_name": "other"}, "not a btd calibration"),
    ],
)
def test_an_unusable_file_is_refused_with_what_is_wrong(tmp_path: Path, change, message):
    path = tmp_path / "d.json"
    _fitted().save(path)
    path.write_text(json.dumps({**json.loads(path.read_text()), **change}))
    with pytest.raises(CalibrationError, match=message):
        Calibration.load(path)


def test_a_file_missing_a_key_of_its_format_is_incomplete(tmp_path: Path):
    path = tmp_path / "e.json"
    _fitted().save(path)
    data = json.loads(path.read_text())
    del data["context_spread"]
    path.write_text(json.dumps(data))
    with pytest.raises(CalibrationError, match=r"incomplete.*context_spread"):
        Calibration.load(path)
