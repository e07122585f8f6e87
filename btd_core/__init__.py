"""btd: Back-in-Time Diffusion, finding tampered CT and MRI slices.

Two worlds share this package (``docs/architecture.md``).  The runtime world needs numpy,
onnxruntime, pydicom and their kin, never torch:

- ``study``: what is in a study folder: discovery, DICOM by job (framing, tag values, frame
  geometry, pixel claims checked before allocation, the header record), ``.zip`` members
  read in place, safe file access, header limits, pixels, the evidence rule (outputs never
  inside an input), the records.
- ``slices``: what the model sees: modality profiles, windowing to [0, 1], tiles, body mask.
- ``engine``: the exported ONNX scorer run with onnxruntime: model card, engine options,
  opening a model with a message a person can act on.
- ``scoring``: one slice score: tiles, local windows, calibration, image context, the
  strategy (a type per mode, and what a score means) and series context (the one place
  that judges a slice with its neighbours).
- ``audit``: a study end to end: the scan configuration, the scan pipeline, ``audit_study``,
  ``btd calibrate``'s work.
- ``findings``: what the examiner gets: ranking, CSV/JSON report, overlays, provenance, the
  report folder, a saved report read back, DICOM SR and SEG, the findings table's columns.
- ``archive``: many studies: plan, SQLite manifest, driver, local and Ray executors, summary.
- ``evaluation``: measuring the detector: test sets, metrics, ROC plot, ``btd eval``'s report.
- ``tamper``: labelled test sets and tampered studies made from genuine scans (copy-move).
- ``errors``, ``hashing``, ``file_lock``, ``atomic``, ``exit_status``, ``safe_text``: the
  base of every btd exception, the one SHA-256 helper, the one lock file, atomic report
  writes, every command's exit statuses, text from files made safe for a terminal.

The torch world needs the ``train`` extra and is never imported by the runtime:

- ``model``: the U-Net as upstream builds it, safe checkpoint loading, the one-step residual,
  training and its config, a short texture fit, diffusion inpainting.

``cli`` holds the ``btd`` commands, the only place that wires the two worlds (and the
``btd_tui`` app and the ``export`` package beside this one) together;
``tests/test_architecture.py`` enforces these rules.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("btd")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"
