"""btd: Back-in-Time Diffusion, finding tampered CT and MRI slices.

The runtime modules (``profiles``, ``model_card``, ``scorer``, ``cli``) need
numpy and onnxruntime only.  The torch world (``diffusion``, ``checkpoint``,
``residual``) needs the ``train`` extra and is never imported by the runtime.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("btd")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"
