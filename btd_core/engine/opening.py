"""Opening a model for scoring, with a message a person can act on when it fails.

Every place that opens a scorer for a user (``btd scan``, ``btd calibrate``, ``btd eval``,
``btd card``, the app) goes through :func:`open_scorer`, so a missing file, a file that
is not a btd scorer, a provider that is not active and a file onnxruntime cannot read
are each explained the same way everywhere.
"""

from __future__ import annotations

from pathlib import Path

from btd_core.engine.model_card import ModelCardError
from btd_core.engine.options import EngineOptions
from btd_core.engine.scorer import ProviderChoice, ProviderError, Scorer
from btd_core.errors import BtdError


class ModelOpenError(BtdError, RuntimeError):
    """The model cannot be opened as asked.

    Attributes
    ----------
    title:
        A few words for a heading ("model file not found", "not a btd scorer", ...).
    """

    def __init__(self, title: str, message: str) -> None:
        super().__init__(message)
        self.title = title


def open_scorer(
    model: Path,
    provider: ProviderChoice = "auto",
    engine: EngineOptions | None = None,
    batch_size: int | None = None,
) -> Scorer:
    """Open ``model`` (an ONNX scorer from ``btd-export``) on ``provider``.

    Raises
    ------
    ModelOpenError
        No such file; not a btd scorer (no or a bad model card); the provider asked
        for is not active, or an engine option does not fit it; a file onnxruntime
        cannot read.  Never a silent fall-back from CUDA to the CPU.
    """
    model = Path(model)
    if not model.is_file():
        raise ModelOpenError("model file not found", f"no such model file: {model}")
    try:
        return Scorer(model, provider=provider, batch_size=batch_size, engine=engine)
    except ProviderError as err:
        raise ModelOpenError(f"provider {provider} is not available", str(err)) from None
    except ModelCardError as err:
        raise ModelOpenError("not a btd scorer", str(err)) from None
    except FileNotFoundError:
        raise ModelOpenError("model file not found", f"no such model file: {model}") from None
    except Exception as err:  # onnxruntime's own errors for a file that is not ONNX
        raise ModelOpenError(
            "model cannot be opened",
            f"{model} is not a readable ONNX model ({err}); make one with btd-export",
        ) from None
