"""One ONNX session shared by the scan and the previews, one call at a time."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from btd_core.engine.model_card import ModelCard
    from btd_core.engine.scorer import PatchScores, Scorer


class SerialScorer:
    """A :class:`btd_core.engine.scorer.Scorer` whose ``score`` runs one call at a time.

    The scan and the previews share one onnxruntime session from two threads; run
    together, their activations add up (peak memory about doubles) and they fight for
    the same cores.  Serialised, a preview waits for the slice being scored, then runs.
    Everything else is the wrapped scorer's, so it goes wherever a ``Scorer`` does
    (the scan, ``view_slice``, the report).  ``closing`` is set when the app quits: a
    waiting preview then gives up instead of delaying the exit by a slice.
    """

    def __init__(self, scorer: Scorer) -> None:
        self.scorer = scorer
        self.closing = threading.Event()
        self._lock = threading.Lock()

    @property
    def card(self) -> ModelCard:
        """The model card."""
        return self.scorer.card

    @property
    def model_path(self) -> Path:
        """The ``.onnx`` file."""
        return self.scorer.model_path

    @property
    def model_sha256(self) -> str:
        """SHA-256 of the model file."""
        return self.scorer.model_sha256

    @property
    def provider_in_use(self) -> str:
        """The onnxruntime provider that really runs."""
        return self.scorer.provider_in_use

    @property
    def provider_note(self) -> str:
        """Why the provider is not the one asked for (``""`` when it is)."""
        return self.scorer.provider_note

    @property
    def batch_size(self) -> int:
        """Patches per call."""
        return self.scorer.batch_size

    def __getattr__(self, name: str) -> Any:
        return getattr(self.scorer, name)

    def score(self, patches: np.ndarray, with_residuals: bool = False) -> PatchScores:
        """The wrapped scorer's ``score``, under the lock; refused once the app closes."""
        with self._lock:
            if self.closing.is_set():
                raise RuntimeError("the app is closing")
            return self.scorer.score(patches, with_residuals=with_residuals)
