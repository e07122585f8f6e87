"""The shared test helpers (``tests/support``) are deterministic: the tiny scorer and the
fixed series are the same bytes on every run (the TUI snapshots rely on it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from btd_core.hashing import file_sha256
from tests.support.cards import tiny_card
from tests.support.fixed_study import write_fixed_series, write_tiny_scorer


def test_tiny_scorer_is_a_deterministic_btd_scorer(tmp_path: Path):
    from btd_core.engine.scorer import Scorer

    first = write_tiny_scorer(tmp_path / "a.onnx")
    second = write_tiny_scorer(tmp_path / "b.onnx")
    assert file_sha256(first) == file_sha256(second)
    scorer = Scorer(first, provider="cpu")
    assert scorer.card == tiny_card()
    flat = np.full((2, 96, 96), 0.5, np.float32)
    noisy = np.random.default_rng(0).random((1, 96, 96)).astype(np.float32)
    scores = scorer.score(np.concatenate([flat, noisy]), with_residuals=True)
    assert scores.scores[0] == pytest.approx(0.0, abs=1e-9) and scores.scores[2] > 0.01


def test_fixed_series_is_byte_identical(tmp_path: Path):
    first = write_fixed_series(tmp_path / "a", 2, description="x", planted_index=1)
    second = write_fixed_series(tmp_path / "b", 2, description="x", planted_index=1)
    assert [file_sha256(p) for p in first] == [file_sha256(p) for p in second]
