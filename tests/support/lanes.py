"""Test lanes: every test is in exactly one of ``unit``, ``integration`` and ``slow``.

- ``unit``: one module or class, in process, on data the test makes (files in
  ``tmp_path`` included); seconds for the whole lane.
- ``integration``: the layers together: a ``btd`` command, the scan pipeline, the app under
  its pilot, an ONNX Runtime session on a scorer file, worker processes or subprocesses.
- ``slow``: trains a model or needs one that has learned something (``trained_ct_onnx``,
  ``btd train``, the demo), or takes tens of seconds on two CPU cores for another reason.

A test file's lane is :data:`FILE_LANES`'s entry for it; a test is ``slow`` instead when it
is marked ``slow`` itself (``@pytest.mark.slow``, or a parameter's ``marks``), uses a
fixture of :data:`SLOW_FIXTURES` or is listed in :data:`SLOW_TESTS` (tens of seconds).
A test may also name its lane with its own ``@pytest.mark.unit`` or
``@pytest.mark.integration`` where it differs from its file's.
:func:`assign_lanes` (called from ``tests/conftest.py`` at collection) adds the marks and
refuses a test file missing from the table or a test in two lanes.  CI runs
``-m "not slow"`` first, then ``-m slow`` (``.ci/run``).
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.util import find_spec
from typing import TypeVar

import pytest

Test = TypeVar("Test", bound=Callable[..., object])

LANES = ("unit", "integration", "slow")

SLOW_FIXTURES = frozenset({"trained_ct_onnx"})
"""Fixtures that train a model: a test that uses one (itself or through another fixture)
is ``slow``."""

SLOW_TESTS = frozenset(
    {
        # a full btd-export --precision fp16 in its fixture (fp16_onnx: 25-40 s)
        "test_engine.py::test_fp16_file_records_its_precision_and_scores_within_tolerance",
        # torch exports of their own (20 s each)
        "test_export.py::test_ema_mri_export",
        "test_export_hostile.py::test_cli_exports_a_bare_fp16_state_dict_truthfully",
        "test_export.py::test_onnx_matches_library_p_sample[17]",
        # torch.onnx's dynamo exporter traces symbolic shapes (20 s for a small U-Net)
        "test_export.py::test_each_exporter_writes_a_graph_that_scores_like_the_library[dynamo]",
        "test_cli.py::test_export_refuses_a_malicious_checkpoint",
        # the app end to end: scan, preview, DICOM export (14 s)
        "test_tui_app.py::test_planted_slice_ranks_first_preview_and_export",
    }
)
"""Tests that are ``slow`` by what they cost, not by a model they train: ``file::name``, or
``file::name[parameters]`` for one case of a parametrised test."""

FILE_LANES: dict[str, str] = {
    "test_architecture.py": "unit",
    "test_archive.py": "integration",
    "test_archive_ray.py": "integration",
    "test_body_coverage.py": "integration",
    "test_calibration_formats.py": "unit",
    "test_checkpoint.py": "integration",
    "test_cli.py": "integration",
    "test_cli_help.py": "unit",
    "test_cli_outputs.py": "integration",
    "test_column_plan.py": "integration",
    "test_demo.py": "slow",
    "test_demo_lock.py": "integration",
    "test_detection.py": "integration",
    "test_dicom_conformance.py": "unit",
    "test_dicom_framing.py": "unit",
    "test_dicom_sr.py": "integration",
    "test_dicom_values.py": "unit",
    "test_discovery.py": "unit",
    "test_docs.py": "unit",
    "test_engine.py": "integration",
    "test_errors.py": "integration",
    "test_eval.py": "integration",
    "test_export.py": "integration",
    "test_export_hostile.py": "integration",
    "test_file_lock.py": "integration",
    "test_frame_geometry.py": "unit",
    "test_hostile_input.py": "integration",
    "test_genuine_rarity.py": "integration",
    "test_html_browser.py": "integration",
    "test_html_report.py": "integration",
    "test_local_energy.py": "unit",
    "test_metrics.py": "unit",
    "test_nifti.py": "integration",
    "test_model_card.py": "unit",
    "test_overlay.py": "unit",
    "test_pixel_claims.py": "unit",
    "test_pixels.py": "unit",
    "test_profiles.py": "unit",
    "test_progress.py": "integration",
    "test_report.py": "unit",
    "test_residual.py": "unit",
    "test_scan.py": "integration",
    "test_scan_config.py": "unit",
    "test_scan_pipeline.py": "integration",
    "test_score_modes.py": "integration",
    "test_scorer.py": "integration",
    "test_series_context.py": "integration",
    "test_tamper.py": "integration",
    "test_test_layout.py": "unit",
    "test_tiling.py": "unit",
    "test_train.py": "slow",
    "test_tui_app.py": "integration",
    "test_tui_layout.py": "integration",
    "test_tui_pixels.py": "integration",
    "test_tui_planted.py": "integration",
    "test_tui_render.py": "unit",
    "test_tui_report.py": "integration",
    "test_tui_snapshots.py": "integration",
    "test_tui_startup.py": "integration",
    "test_tui_state.py": "unit",
    "test_tui_support.py": "unit",
    "test_windowing.py": "unit",
}
"""Each test file's lane (a test that is ``slow`` by its marks or fixtures leaves it)."""


def lane_of(item: pytest.Item) -> str:
    """The one lane of ``item``: ``slow`` by its own marks or fixtures, else a lane it names
    itself, else its file's (:data:`FILE_LANES`)."""
    named = {mark.name for mark in item.iter_markers() if mark.name in LANES}
    fixtures = set(getattr(item, "fixturenames", ()))
    names = {f"{item.path.name}::{item.name}", f"{item.path.name}::{item.originalname}"}
    if "slow" in named or SLOW_FIXTURES & fixtures or SLOW_TESTS & names:
        return "slow"
    if len(named) > 1:
        raise pytest.UsageError(f"{item.nodeid}: marked {sorted(named)}, one lane only")
    if named:
        return named.pop()
    try:
        return FILE_LANES[item.path.name]
    except KeyError:
        raise pytest.UsageError(
            f"{item.path.name} has no lane: add it to FILE_LANES in tests/support/lanes.py"
        ) from None


def assign_lanes(items: list[pytest.Item]) -> None:
    """Mark every collected test with its lane; refuse a test that would be in two."""
    for item in items:
        lane = lane_of(item)
        item.add_marker(lane)
        named = {mark.name for mark in item.iter_markers() if mark.name in LANES}
        if named != {lane}:
            raise pytest.UsageError(
                f"{item.nodeid}: in lanes {sorted(named)}; a test is in exactly one of {LANES} "
                "(a slow test must not name unit or integration)"
            )


def torch_installed(test: Test) -> Test:
    """Mark ``test`` ``torch``: it proves something only where torch is installed (that the
    runtime leaves torch out, that the torch world's errors derive from the base), so CI
    runs it with the train extra and the torch-free lane (``-m "not torch"``) leaves it to
    that run; without torch it skips, saying why."""
    skip = pytest.mark.skipif(
        find_spec("torch") is None,
        reason="proves something only where torch is installed (the train extra)",
    )
    return pytest.mark.torch(skip(test))
