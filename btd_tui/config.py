"""Where ``btd audit`` finds its model when ``--model`` is not given.

In order: the ``BTD_MODEL`` environment variable, then ``model = "..."`` in
``$XDG_CONFIG_HOME/btd/config.toml`` (``~/.config/btd/config.toml`` when
``XDG_CONFIG_HOME`` is unset).  A relative path in the config file is taken
relative to the file's folder; ``~`` is expanded in both.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from btd_core.errors import BtdError

ENV_VAR = "BTD_MODEL"


class ConfigError(BtdError, RuntimeError):
    """No model was given and none is configured, or the config file cannot be read."""


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    """The config file's path (it need not exist)."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME", "~")) / ".config")
    return Path(base).expanduser() / "btd" / "config.toml"


def _load_toml(path: Path) -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ImportError as err:
            raise ConfigError(
                f"cannot read {path}: Python 3.11+ (tomllib) or the tomli package is needed; "
                f"set {ENV_VAR} or pass --model instead"
            ) from err
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot read {path}: {err}") from err


def resolve_model(given: Path | None, environ: Mapping[str, str] | None = None) -> Path:
    """The model to use: ``given``, else ``$BTD_MODEL``, else the config file's ``model``.

    Raises
    ------
    ConfigError
        When none of them names a model (the message says how to set one).
    """
    if given is not None:
        return given
    env = os.environ if environ is None else environ
    if env.get(ENV_VAR):
        return Path(env[ENV_VAR]).expanduser()
    path = config_path(env)
    if path.is_file():
        value = _load_toml(path).get("model")
        if isinstance(value, str) and value:
            model = Path(value).expanduser()
            return model if model.is_absolute() else path.parent / model
        if value is not None:
            raise ConfigError(
                f"{path}: 'model' must be a non-empty string (a path to an .onnx file)"
            )
    raise ConfigError(
        "no model given: pass --model MODEL.onnx, set the environment variable "
        f'{ENV_VAR}, or write model = "/path/to/ct.onnx" into {path}'
    )
