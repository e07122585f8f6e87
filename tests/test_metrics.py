"""Detection metrics: hand-computed examples, ties, and properties against brute force."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from btd_core.evaluation.metrics import (
    auroc,
    average_precision,
    mann_whitney_auroc,
    roc_curve,
    tpr_at_fpr,
)

LABELS = [0, 0, 1, 1]
SCORES = [0.1, 0.4, 0.35, 0.8]


def pairs_auroc(labels, scores) -> float:
    """Brute force: share of (tampered, genuine) pairs ordered right, ties 1/2."""
    pos = [s for y, s in zip(labels, scores, strict=True) if y == 1]
    neg = [s for y, s in zip(labels, scores, strict=True) if y == 0]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def brute_average_precision(labels, scores) -> float:
    """sum (R_n - R_{n-1}) P_n over the distinct thresholds, highest first."""
    labels, scores = np.asarray(labels), np.asarray(scores, dtype=float)
    total, previous_recall = 0.0, 0.0
    for threshold in sorted(set(scores.tolist()), reverse=True):
        called = scores >= threshold
        tp = int((called & (labels == 1)).sum())
        recall = tp / int((labels == 1).sum())
        total += (recall - previous_recall) * tp / int(called.sum())
        previous_recall = recall
    return total


def test_hand_computed_example():
    # Pairs: 0.8 beats 0.1 and 0.4, 0.35 beats 0.1 only: 3 of 4.
    assert auroc(LABELS, SCORES) == pytest.approx(0.75)
    # Thresholds 0.8 (P 1, R .5), 0.4 (P .5, R .5), 0.35 (P 2/3, R 1): .5 + .5 * 2/3.
    assert average_precision(LABELS, SCORES) == pytest.approx(0.5 + 0.5 * 2 / 3)
    fpr, tpr, thresholds = roc_curve(LABELS, SCORES)
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 0.5, 1])
    np.testing.assert_allclose(tpr, [0, 0.5, 0.5, 1, 1])
    np.testing.assert_allclose(thresholds, [np.inf, 0.8, 0.4, 0.35, 0.1])


def test_ties_give_one_point_and_count_half():
    labels, scores = [1, 0, 1, 0], [0.5, 0.5, 0.9, 0.1]
    fpr, tpr, thresholds = roc_curve(labels, scores)
    np.testing.assert_allclose(thresholds, [np.inf, 0.9, 0.5, 0.1])
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 1])
    np.testing.assert_allclose(tpr, [0, 0.5, 1, 1])
    # 0.9 beats both genuine (2), 0.5 ties one (0.5) and beats the other (1): 3.5 / 4.
    assert auroc(labels, scores) == pytest.approx(0.875)
    assert mann_whitney_auroc(labels, scores) == pytest.approx(0.875)


def test_perfect_reversed_and_constant():
    labels = [0, 0, 0, 1, 1]
    assert auroc(labels, [1, 2, 3, 4, 5]) == 1.0
    assert average_precision(labels, [1, 2, 3, 4, 5]) == 1.0
    assert auroc(labels, [5, 4, 3, 2, 1]) == 0.0
    assert auroc(labels, [7, 7, 7, 7, 7]) == 0.5
    # One threshold calling everything tampered: precision = prevalence.
    assert average_precision(labels, [7, 7, 7, 7, 7]) == pytest.approx(0.4)
    assert tpr_at_fpr(labels, [7, 7, 7, 7, 7], 0.5) == 0.0


def test_random_scores_are_near_chance():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 20_000)
    scores = rng.random(20_000)
    assert auroc(labels, scores) == pytest.approx(0.5, abs=0.02)
    assert average_precision(labels, scores) == pytest.approx(labels.mean(), abs=0.02)


def test_tpr_at_fpr_hand_example():
    # Highest first: 10p 9p 8n 5p 4n 3p 2n 1.5p 1n .9n .8n .7n .6n .5n .4n; 10 genuine.
    positives = [10, 9, 5, 3, 1.5]
    negatives = [8, 4, 2, 1, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
    labels = [1] * 5 + [0] * 10
    scores = positives + negatives
    assert tpr_at_fpr(labels, scores, 0.0) == pytest.approx(0.4)
    assert tpr_at_fpr(labels, scores, 0.05) == pytest.approx(0.4)  # FPR moves by 0.1
    assert tpr_at_fpr(labels, scores, 0.1) == pytest.approx(0.6)
    assert tpr_at_fpr(labels, scores, 0.25) == pytest.approx(0.8)
    assert tpr_at_fpr(labels, scores, 0.3) == 1.0
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        tpr_at_fpr(labels, scores, 5)


def test_one_class_and_bad_input_are_refused():
    with pytest.raises(ValueError, match="no tampered"):
        auroc([0, 0, 0], [1, 2, 3])
    with pytest.raises(ValueError, match="no genuine"):
        average_precision([1, 1], [1, 2])
    with pytest.raises(ValueError, match="2 labels but 3 scores"):
        auroc([0, 1], [1, 2, 3])
    with pytest.raises(ValueError, match="0 \\(genuine\\) or 1"):
        auroc([0, 2], [1, 2])
    with pytest.raises(ValueError, match="finite"):
        auroc([0, 1], [1, np.nan])


labelled = st.integers(2, 40).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 1), min_size=n, max_size=n).filter(lambda y: 0 < sum(y) < n),
        st.lists(st.integers(-5, 5), min_size=n, max_size=n),
    )
)


@settings(max_examples=200, deadline=None)
@given(labelled)
def test_auroc_equals_mann_whitney_and_brute_force_with_ties(case):
    labels, scores = case
    expected = pairs_auroc(labels, scores)
    assert auroc(labels, scores) == pytest.approx(expected, abs=1e-12)
    assert mann_whitney_auroc(labels, scores) == pytest.approx(expected, abs=1e-12)
    assert average_precision(labels, scores) == pytest.approx(
        brute_average_precision(labels, scores), abs=1e-12
    )


@settings(max_examples=200, deadline=None)
@given(
    st.integers(2, 40).flatmap(
        lambda n: st.tuples(
            st.lists(st.integers(0, 1), min_size=n, max_size=n).filter(lambda y: 0 < sum(y) < n),
            st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=n, max_size=n, unique=True),
        )
    )
)
def test_negating_untied_scores_mirrors_auroc(case):
    labels, scores = case
    flipped = [-s for s in scores]
    assert auroc(labels, scores) + auroc(labels, flipped) == pytest.approx(1.0, abs=1e-12)
