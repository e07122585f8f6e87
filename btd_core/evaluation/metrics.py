"""Detection metrics with numpy only: ROC curve, AUROC, average precision, TPR at a fixed FPR.

Conventions everywhere here:

``labels``
    1-D, one per image: 1 = tampered (the positive class, expected to score HIGHER),
    0 = genuine.  Booleans are accepted.
``scores``
    1-D finite floats of the same length; higher = more suspicious.  Only their order
    matters.

Every metric needs both classes; a set with only one raises :class:`ValueError` saying
which class is missing.  Tied scores are handled exactly: the ROC curve has one point
per distinct score value (never an arbitrary order inside a tie), which makes the
trapezoidal AUROC equal to the Mann-Whitney U statistic with ties counted 1/2.
"""

from __future__ import annotations

import numpy as np


def _checked(labels: object, scores: object) -> tuple[np.ndarray, np.ndarray]:
    """``labels`` as int8 {0, 1} and ``scores`` as float64, both 1-D and of one length."""
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim != 1 or s.ndim != 1:
        raise ValueError(f"labels and scores must be 1-D, got shapes {y.shape} and {s.shape}")
    if len(y) != len(s):
        raise ValueError(f"{len(y)} labels but {len(s)} scores")
    if y.dtype == bool:
        y = y.astype(np.int8)
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (genuine) or 1 (tampered)")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite (no NaN or infinity)")
    n_pos = int(np.count_nonzero(y == 1))
    if n_pos == 0 or n_pos == len(y):
        missing = "tampered (label 1)" if n_pos == 0 else "genuine (label 0)"
        raise ValueError(
            f"a metric needs both classes, but this set has no {missing} images "
            f"({len(y)} images in all)"
        )
    return y.astype(np.int8), s


def _counts(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative (false positives, true positives) at each distinct score, highest first.

    Returns ``fps``, ``tps`` (int64) and the distinct ``thresholds`` (descending); entry k
    counts the images whose score is >= ``thresholds[k]``.
    """
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(s_sorted)), len(s_sorted) - 1]
    tps = np.cumsum(y_sorted, dtype=np.int64)[last_of_tie]
    fps = (last_of_tie + 1) - tps
    return fps, tps, s_sorted[last_of_tie]


def roc_curve(labels: object, scores: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ROC curve: one point per distinct score value, plus the origin.

    Returns
    -------
    fpr, tpr:
        float64 in [0, 1], non-decreasing; point k is the (false, true) positive rate
        when every image scoring >= ``thresholds[k]`` is called tampered.  The first
        point is (0, 0), the last (1, 1).
    thresholds:
        float64, descending: ``+inf`` for the origin, then the distinct scores.

    Raises
    ------
    ValueError
        When a class is missing, lengths differ, labels are not 0/1 or a score is not finite.
    """
    y, s = _checked(labels, scores)
    fps, tps, thresholds = _counts(y, s)
    n_pos, n_neg = int(tps[-1]), int(fps[-1])
    fpr = np.r_[0.0, fps / n_neg]
    tpr = np.r_[0.0, tps / n_pos]
    return fpr, tpr, np.r_[np.inf, thresholds]


def auroc(labels: object, scores: object) -> float:
    """Area under the ROC curve in [0, 1], by the trapezoid rule over :func:`roc_curve`.

    1.0: every tampered image scores above every genuine one; 0.5: no better than chance
    (or all scores equal); 0.0: perfectly reversed.  Equals :func:`mann_whitney_auroc`.
    """
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1])) / 2.0)


def mann_whitney_auroc(labels: object, scores: object) -> float:
    """AUROC as U / (n_pos n_neg), in [0, 1]: the share of (tampered, genuine) pairs in
    which the tampered image scores higher, ties counted 1/2 (through mid-ranks)."""
    y, s = _checked(labels, scores)
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    first_rank = np.cumsum(counts) - counts + 1
    mid_rank = first_rank + (counts - 1) / 2.0
    ranks = mid_rank[inverse.reshape(-1)]
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    u = float(ranks[y == 1].sum()) - n_pos * (n_pos + 1) / 2.0
    return u / (n_pos * n_neg)


def average_precision(labels: object, scores: object) -> float:
    """Average precision in [0, 1], step-wise (scikit-learn's definition, no interpolation).

    ``AP = sum_n (R_n - R_{n-1}) P_n`` over the distinct score values, highest first, with
    R_n the recall and P_n the precision when images scoring >= the n-th value are called
    tampered, and R_0 = 0.  1.0 for a perfect ranking; about the share of tampered images
    for a random one.
    """
    y, s = _checked(labels, scores)
    fps, tps, _ = _counts(y, s)
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def tpr_at_fpr(labels: object, scores: object, fpr_limit: float) -> float:
    """The best true positive rate in [0, 1] among ROC points whose FPR is <= ``fpr_limit``.

    ``fpr_limit`` is a rate in [0, 1] (0.01 for "TPR at 1 % FPR").  No interpolation
    between points: with 50 genuine images, FPR moves in steps of 0.02, so a 1 % limit
    admits only the points with no false positive at all.
    """
    if not 0.0 <= fpr_limit <= 1.0:
        raise ValueError(f"fpr_limit is a rate in [0, 1], got {fpr_limit}")
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(tpr[fpr <= fpr_limit + 1e-12].max())
