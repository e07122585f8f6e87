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
  schedule buffers), e.g. a model-only fp16 copy.  It does not record whether it
  holds EMA or raw weights: the caller must say (``weights="ema"`` or ``"model"``).

Schedule constants
------------------
The schedule buffers are never used as stored: reduced-precision copies (float16,
bfloat16) lose the t = 0 constants (``sqrt_recip_alphas_cumprod[0]`` = 1.00015
rounds to 1.0 in float16).  The loader names the library schedule (sigmoid, cosine,
linear) that the buffers match within their dtype's rounding, recomputes every
schedule buffer in float64 as the library does, and loads that (rounded to float32,
like the library).  Reduced-precision buffers that match no schedule are refused;
float32 buffers that match none are kept as they are and called ``"custom"``.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from btd_core.errors import BtdError
from btd_core.hashing import file_sha256
from btd_core.model.diffusion import GaussianDiffusion, build_diffusion, ddp

WEIGHT_CHOICES = ("model", "ema")
_V2_MARKERS = (re.compile(r"block\d\.norm\.g$"), re.compile(r"mem_kv$"))
_UPSTREAM_KEY = "model.init_conv.weight"


class CheckpointError(BtdError, ValueError):
    """The file is not a checkpoint this build can load; the message says why and what to do."""


SCHEDULE_BUFFERS = (
    "betas",
    "alphas_cumprod",
    "alphas_cumprod_prev",
    "sqrt_alphas_cumprod",
    "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod",
    "sqrt_recip_alphas_cumprod",
    "sqrt_recipm1_alphas_cumprod",
    "posterior_variance",
    "posterior_log_variance_clipped",
    "posterior_mean_coef1",
    "posterior_mean_coef2",
)
"""The buffers ``GaussianDiffusion`` (1.8.3) derives from its beta schedule.  The 13th
buffer, ``loss_weight``, follows from the training objective and is loaded as stored."""

SCHEDULES = {
    "sigmoid": ddp.sigmoid_beta_schedule,
    "cosine": ddp.cosine_beta_schedule,
    "linear": ddp.linear_beta_schedule,
}
"""The library's beta schedules, in the order they are tried (sigmoid: 1.8.3's default)."""

_TOLERANCE_ULPS = 2.0
"""Allowed distance of a stored buffer from its float64 recomputation, in units in the last
place of the buffer's dtype (float32 at least: the library rounds to float32 first)."""


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
    beta_schedule:
        The library schedule the buffers match (``"sigmoid"``, ``"cosine"``, ``"linear"``),
        or ``"custom"`` (float32 buffers that match none, used as stored).
    t0:
        The t = 0 constants (``beta_0``, ``sqrt_recip_alphas_cumprod_0``, ...; the keys of
        :func:`btd_core.model.residual.t0_constants`) from the float64 recomputation of
        ``beta_schedule``; from the float32 buffers for ``"custom"``.
    weights_source:
        Why ``weights`` is what it is (the layout's default, or the caller's statement).
    notes:
        What the loader changed or assumed, for the user (casts, the schedule's origin).
    """

    diffusion: GaussianDiffusion
    weights: str
    step: int
    library_version: str
    sha256: str
    name: str
    extra: dict[str, Any]
    beta_schedule: str = "custom"
    t0: dict[str, float] = field(default_factory=dict)
    weights_source: str = ""
    notes: list[str] = field(default_factory=list)


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


def is_bare_state_dict(data: dict[str, Any]) -> bool:
    """True for a bare ``GaussianDiffusion.state_dict()`` (no trainer wrapper around it)."""
    return not isinstance(data.get("model"), dict) and _UPSTREAM_KEY in data


def resolve_weights(data: dict[str, Any], weights: str | None, where: str) -> tuple[str, str]:
    """Which weights to load, ``"model"`` or ``"ema"``, and why (for the user).

    ``weights=None`` means the layout's default: the raw ``model`` weights of a trainer
    checkpoint (what upstream loads).  A bare state dict has no default: it cannot say
    whether it holds EMA or raw weights, so the caller must.

    Raises
    ------
    CheckpointError
        A bare state dict and ``weights=None``.
    """
    if weights is not None and weights not in WEIGHT_CHOICES:
        raise ValueError(f"weights must be one of {WEIGHT_CHOICES} or None, not {weights!r}")
    if is_bare_state_dict(data):
        if weights is None:
            raise CheckpointError(
                f"{where}: a bare state dict does not record whether it holds EMA or raw "
                "(non-EMA) weights, and the model card must say which. Say which: "
                "btd-export --ema (EMA weights) or --raw (raw weights)."
            )
        return weights, "as stated by the user: a bare state dict cannot tell EMA from raw"
    if weights is None:
        return "model", "the raw weights, the default (as upstream loads); --ema for the EMA"
    if weights == "ema":
        return weights, "as asked: the checkpoint's EMA weights (ema.ema_model.*)"
    return weights, "as asked: the checkpoint's raw weights ('model')"


def select_state_dict(data: dict[str, Any], weights: str, where: str) -> dict[str, torch.Tensor]:
    """Pick the ``GaussianDiffusion`` state dict for ``weights`` out of a checkpoint dict.

    A bare state dict is returned as it is, for either ``weights``: which weights it
    holds is the caller's statement (see :func:`resolve_weights`).
    """
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


# --- the beta schedule ------------------------------------------------------------------


@dataclass(frozen=True)
class ScheduleIdentity:
    """What the loader made of a checkpoint's schedule buffers.

    Attributes
    ----------
    name:
        ``"sigmoid"``, ``"cosine"`` or ``"linear"``; ``"custom"`` when float32 buffers match
        none of them.
    stored_dtype:
        The buffers' dtype(s) as stored, e.g. ``"float16"``.
    buffers:
        The float64 recomputation of every buffer of :data:`SCHEDULE_BUFFERS`; empty for
        ``"custom"``.
    t0:
        The t = 0 constants (see :func:`t0_from_buffers`).
    """

    name: str
    stored_dtype: str
    buffers: dict[str, torch.Tensor]
    t0: dict[str, float]


def schedule_buffers(name: str, timesteps: int) -> dict[str, torch.Tensor]:
    """Every buffer of :data:`SCHEDULE_BUFFERS` for the library schedule ``name``, float64.

    The arithmetic of ``GaussianDiffusion.__init__`` (1.8.3), before the library rounds
    the results to float32.  ``timesteps`` is T (1000 for BTD).
    """
    betas = SCHEDULES[name](timesteps).to(torch.float64)
    alphas = 1.0 - betas
    alphas_cumprod = torch.cumprod(alphas, dim=0)
    alphas_cumprod_prev = F.pad(alphas_cumprod[:-1], (1, 0), value=1.0)
    posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
    return {
        "betas": betas,
        "alphas_cumprod": alphas_cumprod,
        "alphas_cumprod_prev": alphas_cumprod_prev,
        "sqrt_alphas_cumprod": torch.sqrt(alphas_cumprod),
        "sqrt_one_minus_alphas_cumprod": torch.sqrt(1.0 - alphas_cumprod),
        "log_one_minus_alphas_cumprod": torch.log(1.0 - alphas_cumprod),
        "sqrt_recip_alphas_cumprod": torch.sqrt(1.0 / alphas_cumprod),
        "sqrt_recipm1_alphas_cumprod": torch.sqrt(1.0 / alphas_cumprod - 1),
        "posterior_variance": posterior_variance,
        "posterior_log_variance_clipped": torch.log(posterior_variance.clamp(min=1e-20)),
        "posterior_mean_coef1": betas * torch.sqrt(alphas_cumprod_prev) / (1.0 - alphas_cumprod),
        "posterior_mean_coef2": (1.0 - alphas_cumprod_prev)
        * torch.sqrt(alphas)
        / (1.0 - alphas_cumprod),
    }


def t0_from_buffers(buffers: dict[str, torch.Tensor]) -> dict[str, float]:
    """The t = 0 constants of the one-step residual from schedule ``buffers`` (any dtype).

    Same keys as :func:`btd_core.model.residual.t0_constants`; values are Python floats
    (float64), dimensionless.
    """
    return {
        "beta_0": float(buffers["betas"][0]),
        "sqrt_recip_alphas_cumprod_0": float(buffers["sqrt_recip_alphas_cumprod"][0]),
        "sqrt_recipm1_alphas_cumprod_0": float(buffers["sqrt_recipm1_alphas_cumprod"][0]),
        "posterior_mean_coef1_0": float(buffers["posterior_mean_coef1"][0]),
        "posterior_mean_coef2_0": float(buffers["posterior_mean_coef2"][0]),
    }


def buffer_tolerance(dtype: torch.dtype) -> tuple[float, float]:
    """(rtol, atol) between a stored buffer of ``dtype`` and its float64 recomputation.

    The library rounds the float64 schedule to float32; a reduced-precision copy rounds
    it once more.  Each rounding moves a value by at most half a unit in the last place
    (ulp) of its type, and one ulp is at most ``eps * |value|``.  Allowed: 2 ulps of the
    coarser of ``dtype`` and float32 (``rtol``), plus 2 of its subnormal steps
    (``atol``) for values that underflow (e.g. ``alphas_cumprod`` near t = T in float16).
    """
    info = torch.finfo(dtype if dtype.is_floating_point else torch.float32)
    if info.eps < torch.finfo(torch.float32).eps:
        info = torch.finfo(torch.float32)
    return _TOLERANCE_ULPS * info.eps, _TOLERANCE_ULPS * info.tiny * info.eps


def schedule_mismatch(
    state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]
) -> str | None:
    """``None`` when every stored schedule buffer is within :func:`buffer_tolerance` of
    ``expected``; otherwise the first buffer and entry that is not, in words."""
    for name in SCHEDULE_BUFFERS:
        stored, want = state[name], expected[name]
        if tuple(stored.shape) != tuple(want.shape):
            return f"{name} has shape {tuple(stored.shape)}, not {tuple(want.shape)}"
        got = stored.detach().to(torch.float64).cpu()
        rtol, atol = buffer_tolerance(stored.dtype)
        excess = (got - want).abs() - (atol + rtol * want.abs())
        excess[~torch.isfinite(got)] = float("inf")
        if bool((excess > 0).any()):
            at = int(excess.argmax())
            return f"{name}[{at}] is {float(got[at]):.6g}, expected {float(want[at]):.6g}"
    return None


def _dtype_names(tensors: list[torch.Tensor]) -> str:
    """The distinct dtypes of ``tensors``, e.g. ``"float16"`` or ``"float16 and float32"``."""
    names = sorted({str(t.dtype).removeprefix("torch.") for t in tensors})
    return " and ".join(names)


def _is_reduced_precision(tensors: list[torch.Tensor]) -> bool:
    """True when any of ``tensors`` is a floating type coarser than float32."""
    limit = torch.finfo(torch.float32).eps
    return any(t.is_floating_point() and torch.finfo(t.dtype).eps > limit for t in tensors)


def identify_schedule(state: dict[str, torch.Tensor], where: str) -> ScheduleIdentity:
    """Name the library schedule of ``state``'s buffers and recompute it in float64.

    Each of :data:`SCHEDULES` is recomputed in float64 for the buffers' T and compared,
    buffer by buffer, within :func:`buffer_tolerance` of each buffer's dtype.

    Raises
    ------
    CheckpointError
        A schedule buffer is missing, or reduced-precision buffers match no schedule: their
        t = 0 constants are too coarse to use and cannot be recomputed.
    """
    missing = [name for name in SCHEDULE_BUFFERS if name not in state]
    if missing:
        raise CheckpointError(f"{where}: the state dict lacks the schedule buffers {missing}")
    stored = [state[name] for name in SCHEDULE_BUFFERS]
    dtype = _dtype_names(stored)
    timesteps = int(state["betas"].numel())
    reasons = []
    for name in SCHEDULES:
        expected = schedule_buffers(name, timesteps)
        reason = schedule_mismatch(state, expected)
        if reason is None:
            return ScheduleIdentity(name, dtype, expected, t0_from_buffers(expected))
        reasons.append(f"{name}: {reason}")
    if _is_reduced_precision(stored):
        raise CheckpointError(
            f"{where}: refused: its schedule buffers are {dtype} and match none of the "
            f"library's schedules ({'; '.join(reasons)}). {dtype} is too coarse to take the "
            "t = 0 constants from (sqrt_recip_alphas_cumprod[0] = 1.00015 of the sigmoid "
            "schedule reads 1.0 in float16), and they cannot be recomputed without knowing "
            "the schedule. Export from a copy whose buffers are float32."
        )
    return ScheduleIdentity("custom", dtype, {}, t0_from_buffers(state))


def schedule_note(identity: ScheduleIdentity, state: dict[str, torch.Tensor]) -> str | None:
    """What the user should know about where the t = 0 constants came from, or ``None``
    for float32 buffers of a library schedule (nothing to say)."""
    stored = [state[name] for name in SCHEDULE_BUFFERS]
    if identity.name == "custom":
        return (
            f"the {identity.stored_dtype} schedule buffers match none of the library's "
            "schedules (sigmoid, cosine, linear): schedule 'custom', t = 0 constants read "
            "from the buffers as stored"
        )
    if not _is_reduced_precision(stored):
        return None
    kept = t0_from_buffers(state)
    shown = {
        "sqrt_recip_alphas_cumprod_0": "sqrt_recip_alphas_cumprod[0]",
        "sqrt_recipm1_alphas_cumprod_0": "sqrt_recipm1_alphas_cumprod[0]",
        "beta_0": "betas[0]",
    }
    changed = ", ".join(
        f"{label} = {identity.t0[key]:.9g} (stored {kept[key]:.6g})" for key, label in shown.items()
    )
    return (
        f"schedule buffers stored as {identity.stored_dtype}: identified as the "
        f"{identity.name} schedule (every buffer within {_TOLERANCE_ULPS:g} ulps of "
        f"{identity.stored_dtype}); all schedule constants recomputed in float64, not taken "
        f"from the buffers: {changed}"
    )


def weights_note(state: dict[str, torch.Tensor]) -> str | None:
    """``"weights stored as float16, cast to float32"`` when the U-Net's weights are not
    float32 (they are always loaded into the float32 model), else ``None``."""
    weights = [v for k, v in state.items() if k.startswith("model.") and v.is_floating_point()]
    if not weights or all(v.dtype == torch.float32 for v in weights):
        return None
    return f"weights stored as {_dtype_names(weights)}, cast to float32"


def apply_schedule(diffusion: GaussianDiffusion, identity: ScheduleIdentity) -> None:
    """Overwrite ``diffusion``'s schedule buffers with ``identity``'s float64 recomputation,
    rounded to float32 as the library's constructor does (no-op for ``"custom"``)."""
    with torch.no_grad():
        for name, values in identity.buffers.items():
            getattr(diffusion, name).copy_(values.to(torch.float32))


# --- loading ------------------------------------------------------------------------------


def _load_strictly(
    diffusion: GaussianDiffusion, state: dict[str, torch.Tensor], where: str
) -> None:
    """Load ``state`` (floating tensors cast to float32) into ``diffusion``, strictly."""
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


def load_checkpoint(
    path: str | Path, weights: str | None = None, image_size: int = 96
) -> LoadedCheckpoint:
    """Load a checkpoint strictly into the method's model (float32, CPU, eval mode).

    Parameters
    ----------
    path:
        The ``.pt`` file.
    weights:
        ``"model"`` (raw weights) or ``"ema"``.  ``None``: the raw ``model`` weights of a
        trainer checkpoint (what upstream loads); a bare state dict needs it stated.
    image_size:
        Patch side S in pixels; from the file's ``btd`` metadata when present.
        The weights themselves do not depend on it.

    The schedule buffers are replaced by the float64 recomputation of the library schedule
    they match (see :func:`identify_schedule`); reduced-precision weights are cast to
    float32.  ``notes`` of the result says so.

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
    weights, weights_source = resolve_weights(data, weights, where)
    state = select_state_dict(data, weights, where)
    check_layout(state, version, where)
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{where}: state dict entries that are not tensors: {bad[:5]}")
    diffusion = build_diffusion(int(extra.get("image_size", image_size)))
    _load_strictly(diffusion, state, where)
    identity = identify_schedule(state, where)
    apply_schedule(diffusion, identity)
    notes = [n for n in (weights_note(state), schedule_note(identity, state)) if n]
    step = data.get("step", -1)
    return LoadedCheckpoint(
        diffusion=diffusion.eval(),
        weights=weights,
        step=int(step) if isinstance(step, int) else -1,
        library_version=version,
        sha256=file_sha256(path),
        name=path.name,
        extra=dict(extra),
        beta_schedule=identity.name,
        t0=identity.t0,
        weights_source=weights_source,
        notes=notes,
    )
