"""The one scan configuration: built from the command line once (``cli.args.scan_config``),
and its report identity (every field that changes a report, and only those)."""

from __future__ import annotations

import json
from dataclasses import fields, is_dataclass, replace
from pathlib import Path

import pytest

from btd_core.audit.scan_config import NOT_IN_REPORT_IDENTITY, ReportOutputs, ScanConfig
from btd_core.cli.args import scan_config
from btd_core.cli.main import build_parser
from btd_core.engine.options import EngineOptions
from btd_core.scoring.strategy import ScoreRequest
from btd_core.scoring.tiles import DEFAULT_OVERLAYS, ScanSettings
from btd_core.study.limits import DEFAULT_LIMITS, StudyLimits

SCAN = ["scan", "STUDY", "--model", "m.onnx", "--out", "OUT"]


def config_of(*argv: str) -> ScanConfig:
    """What ``btd ARGV`` would scan with."""
    return scan_config(build_parser().parse_args(list(argv)))


@pytest.mark.parametrize(
    "argv",
    [
        SCAN,
        ["audit", "STUDY"],
        ["archive", "ROOT", "--model", "m.onnx", "--out", "OUT"],
        ["eval", "TESTSET", "--model", "m.onnx", "--out", "OUT"],
    ],
    ids=lambda argv: argv[0],
)
def test_every_command_without_flags_scans_with_the_library_defaults(argv: list[str]):
    assert config_of(*argv) == ScanConfig()
    assert ScanConfig().settings.overlays == DEFAULT_OVERLAYS == 10


def test_btd_scan_flags_land_in_their_fields():
    config = config_of(
        *SCAN,
        *("--provider", "cpu", "--stride", "48", "--overlays", "3", "--patch-at", "10", "20"),
        *("--score", "local", "--window", "16", "--no-context", "--calibration", "c.json"),
        *("--max-pixels", "512", "--max-frames", "5", "--max-slices", "7"),
        *("--max-member-mb", "2", "--batch-size", "4", "--threads", "2", "--workers", "3"),
        *("--optimization", "basic", "--cudnn-search", "default", "--cuda-graph", "--nhwc"),
        *("--no-phi",),
    )
    assert config == ScanConfig(
        provider="cpu",
        engine=EngineOptions(
            batch_size=4,
            threads=2,
            optimization="basic",
            cudnn_search="default",
            cuda_graph=True,
            nhwc=True,
        ),
        score=ScoreRequest("local", window=16, calibration_path=Path("c.json"), context=False),
        settings=ScanSettings(stride=48, overlays=3, patch_at=(10, 20), workers=3),
        limits=replace(
            DEFAULT_LIMITS,
            max_pixels=512 * 512,
            max_frames=5,
            max_slices=7,
            max_member_bytes=2 << 20,
        ),
        outputs=ReportOutputs(include_phi=False),
    )


def test_dicom_output_takes_the_top_count_only_when_asked():
    assert config_of(*SCAN, "--top", "4", "--dicom").outputs == ReportOutputs(dicom_top=4)
    assert config_of(*SCAN, "--top", "4").outputs.dicom_top is None


def test_the_archive_and_the_app_read_their_own_flags():
    archive = config_of("archive", "R", "--model", "m", "--out", "O", "--overlays", "2", "--no-phi")
    assert archive.settings.overlays == 2 and not archive.outputs.include_phi
    audit = config_of("audit", "STUDY", "--stride", "32", "--max-frames", "9", "--score", "tile")
    assert audit.settings.stride == 32 and audit.limits.max_frames == 9
    assert audit.score.mode == "tile"


def leaf_paths(value: object, path: str = "") -> list[str]:
    """Every field of a (nested) frozen dataclass, as a dotted path."""
    if not is_dataclass(value):
        return [path]
    found = []
    for item in fields(value):
        found += leaf_paths(getattr(value, item.name), f"{path}.{item.name}" if path else item.name)
    return found


def excluded(path: str) -> bool:
    return any(path == name or path.startswith(f"{name}.") for name in NOT_IN_REPORT_IDENTITY)


def test_every_field_is_decided_and_every_exclusion_names_a_field():
    paths = leaf_paths(ScanConfig())
    identity = ScanConfig().report_identity()
    for path in paths:
        node: object = identity
        for part in path.split("."):
            node = node.get(part, KeyError) if isinstance(node, dict) else KeyError
        assert (node is KeyError) == excluded(path), path
    for name in NOT_IN_REPORT_IDENTITY:
        assert any(p == name or p.startswith(f"{name}.") for p in paths), name
    json.dumps(identity)  # plain JSON values


CHANGES_A_REPORT = [
    ("score", ScoreRequest("tile")),
    ("score", ScoreRequest(window=16)),
    ("score", ScoreRequest(window_stride=8)),
    ("score", ScoreRequest(context=False)),
    ("settings", ScanSettings(stride=48)),
    ("settings", ScanSettings(patch_at=(1, 2))),
    ("settings", ScanSettings(body_level=0.5)),
    ("settings", ScanSettings(body_fraction=0.9)),
    ("settings", ScanSettings(overlays=3)),
    ("limits", StudyLimits(max_frames=5)),
    ("limits", StudyLimits(max_slices=5)),
    ("outputs", ReportOutputs(include_phi=False)),
    ("outputs", ReportOutputs(dicom_top=3)),
]
SPEED_ONLY = [
    ("provider", "cpu"),
    ("engine", EngineOptions(batch_size=4, threads=2, optimization="basic", cuda_graph=True)),
    ("settings", ScanSettings(workers=3)),
    ("score", ScoreRequest(calibration_path=Path("elsewhere.json"))),
]


@pytest.mark.parametrize(("name", "value"), CHANGES_A_REPORT, ids=repr)
def test_a_field_that_changes_a_report_changes_the_identity(name: str, value: object):
    base = ScanConfig()
    assert replace(base, **{name: value}).report_identity() != base.report_identity()


@pytest.mark.parametrize(("name", "value"), SPEED_ONLY, ids=repr)
def test_engine_speed_and_where_it_runs_leave_the_identity_alone(name: str, value: object):
    base = ScanConfig()
    assert replace(base, **{name: value}).report_identity() == base.report_identity()
