"""Helpers shared by the test modules: fixed model cards, fixed studies and a tiny scorer,
the TUI pilot's helpers, a real CT slice and a built archive.

Test modules import helpers from here (or from ``tests/onnx_scorer.py`` and
``tests/study_builder.py``), never from one another: ``tests/test_architecture.py`` checks it.
"""
