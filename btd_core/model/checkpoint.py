"""Loading checkpoints safely: the authors' released ones and this project's (torch world).

A ``.pt`` file is a pickle, and a full unpickle runs whatever code the file
asks for.  Every load here is ``torch.load(..., weights_only=True)``: only
tensors and plain values are rebuilt, anything else is refused before it runs.

Accepted layouts
----------------
* **Upstream trainer checkpoint** (``CT_model.pt``, ``MRI_model.pt``, and what
  ``btd train`` writes): a dict with ``step``, ``model``, ``opt``, ``ema``,
  ``scaler``, ``version``; ``model`` is the non-EMA ``GaussianDiffusion.state_dict()``
  (what upstream loads), ``ema`` holds ``ema_model.*`` / ``online_model.*``.
  This project adds an optional ``btd`` dict (``modality``, ``image_size``, ...).
* **Bare state dict** of ``GaussianDiffusion`` (``model.*`` keys plus the 13
  schedule buffers), e.g. a model-only fp16 copy.
"""

from __future__ import annotations

import hashlib
import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from btd_core.model.diffusion import GaussianDiffusion, build_diffusion

WEIGHT_CHOICES = ("model", "ema")
_V2_MARKERS = (re.compile(r"block\d\.norm\.g$"), re.compile(r"mem_kv$"))
_UPSTREAM_KEY = "model.init_conv.weight"


class CheckpointError(ValueError):
    """The file is not a checkpoint this build can load; the message says why and what to do."""


@dataclass
class LoadedCheckpoint:
    """A checkpoint loaded into the method's model.

    Attributes
    ----------
    diffusion:
        The ``GaussianDiffusion`` in eval mode, on the CPU, float32.
    weights:
        ``"model"`` (raw weights, upstream's choice) or ``"ema"``.
    step:
        Training step recorded in the file, or -1 when absent.
    library_version:
        denoising-diffusion-pytorch version recorded in the file, or ``"unknown"``.
    sha256:
        SHA-256 of the checkpoint file, hex.
    name:
        The file's name (no directories).
    extra:
        This project's ``btd`` metadata from the file (empty for upstream files).
    """

    diffusion: GaussianDiffusion
    weights: str
    step: int
    library_version: str
    sha256: str
    name: str
    extra: dict[str, Any]


def file_sha256(path: Path, chunk_bytes: int = 1 << 20) -> str:
    """SHA-256 of a file, read in chunks of ``chunk_bytes``."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Unpickle ``path`` in weights-only mode and return the top-level dict.

    Raises
    ------
    CheckpointError
        Missing, empty, truncated or corrupt file; a pickle that asks to import or
        call code (refused, nothing runs); a pickle that is not a dict.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: the file is empty")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(_unpickling_message(path, str(err))) from None
    except (EOFError, zipfile.BadZipFile) as err:
        raise CheckpointError(
            f"{path}: the file is truncated or corrupt ({err or 'EOF'})"
        ) from None
    except RuntimeError as err:
        if "zip archive" in str(err) or "central directory" in str(err):
            raise CheckpointError(
                f"{path}: the file is truncated or corrupt (its zip archive is incomplete); "
                "copy it again and compare its SHA-256 with the source"
            ) from None
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({err})") from None
    except Exception as err:
        raise CheckpointError(
            f"{path}: not a PyTorch checkpoint ({type(err).__name__}: {err})"
        ) from None
    if not isinstance(data, dict):
        raise CheckpointError(
            f"{path}: this pickle holds a {type(data).__name__}, not a checkpoint dict "
            "(expected the keys step, model, opt, ema, scaler, version)"
        )
    return data


def _unpickling_message(path: Path, text: str) -> str:
    blocked = re.search(r"GLOBAL ([\w.]+)", text)
    if blocked:
        return (
            f"{path}: refused: the file asks to import or call {blocked.group(1)} while it is "
            "loaded. A checkpoint holds only tensors and numbers, so this file may be malicious; "
            "nothing from it was run."
        )
    return (
        f"{path}: not a PyTorch checkpoint: its content is not plain tensors and values "
        "(btd loads checkpoints in weights-only mode only)"
    )


def select_state_dict(data: dict[str, Any], weights: str, where: str) -> dict[str, torch.Tensor]:
    """Pick the ``GaussianDiffusion`` state dict for ``weights`` out of a checkpoint dict."""
    if weights not in WEIGHT_CHOICES:
        raise ValueError(f"weights must be one of {WEIGHT_CHOICES}, not {weights!r}")
    if isinstance(data.get("model"), dict):
        if weights == "model":
            return data["model"]
        ema = data.get("ema")
        if not isinstance(ema, dict):
            raise CheckpointError(f"{where}: --ema asked for, but the file has no EMA weights")
        prefix = "ema_model."
        state = {k[len(prefix) :]: v for k, v in ema.items() if k.startswith(prefix)}
        if not state:
            raise CheckpointError(f"{where}: the file's 'ema' entry holds no ema_model.* weights")
        return state
    if _UPSTREAM_KEY in data:
        if weights == "ema":
            raise CheckpointError(f"{where}: a bare state dict has no EMA weights; drop --ema")
        return data
    shown = ", ".join(sorted(map(str, data))[:8])
    raise CheckpointError(
        f"{where}: a dict, but not a BTD / denoising-diffusion checkpoint: no 'model' entry and "
        f"no '{_UPSTREAM_KEY}' (keys seen: {shown})"
    )


def check_layout(state: dict[str, torch.Tensor], version: str, where: str) -> None:
    """Refuse state dicts of denoising-diffusion-pytorch >= 1.9 / 2.x with a clear reason."""
    newer = sorted(k for k in state if any(m.search(k) for m in _V2_MARKERS))
    if newer or version.startswith("2."):
        example = f" (e.g. {newer[0]})" if newer else ""
        raise CheckpointError(
            f"{where}: this checkpoint was made with denoising-diffusion-pytorch {version}, whose "
            f"layout differs from 1.8.x{example}: RMSNorm instead of GroupNorm, memory key/values. "
            "BTD's model and released weights are 1.8.3; its maths differs, so it is not "
            "converted. Use a checkpoint trained with 1.8.x (btd train)."
        )


def load_checkpoint(
    path: str | Path, weights: str = "model", image_size: int = 96
) -> LoadedCheckpoint:
    """Load a checkpoint strictly into the method's model.

    Parameters
    ----------
    path:
        The ``.pt`` file.
    weights:
        ``"model"`` (default, what upstream loads) or ``"ema"``.
    image_size:
        Patch side S in pixels; from the file's ``btd`` metadata when present.
        The weights themselves do not depend on it.

    Raises
    ------
    CheckpointError
        For every file that cannot be loaded, with the reason.
    """
    path = Path(path)
    where = str(path)
    data = read_checkpoint(path)
    extra = data.get("btd") if isinstance(data.get("btd"), dict) else {}
    version = str(data.get("version", "unknown"))
    state = select_state_dict(data, weights, where)
    check_layout(state, version, where)
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{where}: state dict entries that are not tensors: {bad[:5]}")
    diffusion = build_diffusion(int(extra.get("image_size", image_size)))
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    try:
        diffusion.load_state_dict(state, strict=True)
    except RuntimeError as err:
        expected = set(diffusion.state_dict())
        missing = sorted(expected - set(state))
        unexpected = sorted(set(state) - expected)
        detail = (
            f"{len(missing)} missing (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})"
        )
        if not missing and not unexpected:
            detail = str(err).splitlines()[-1].strip()
        raise CheckpointError(
            f"{where}: the weights do not fit BTD's U-Net "
            f"(dim 32, mults 1-2-4-8, 1 channel): {detail}"
        ) from None
    step = data.get("step", -1)
    return LoadedCheckpoint(
        diffusion=diffusion.eval(),
        weights=weights,
        step=int(step) if isinstance(step, int) else -1,
        library_version=version,
        sha256=file_sha256(path),
        name=path.name,
        extra=dict(extra),
    )
