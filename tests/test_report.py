"""Reports: findings.csv, files.csv and report.json, written to real files and read back."""

from __future__ import annotations

import csv
import json
import os
import stat
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from btd_core.atomic import atomic_write_bytes
from btd_core.findings.csv_table import neutralise_cell
from btd_core.findings.provenance import library_versions, utc_now
from btd_core.findings.report import (
    FILES_COLUMNS,
    FINDINGS_COLUMNS,
    PHI_COLUMNS,
    SERIES_COLUMNS,
    write_report,
)
from btd_core.findings.score_text import score_text
from btd_core.hashing import file_sha256
from btd_core.safe_text import printable
from btd_core.study.records import FileRecord, Finding, Series, SliceRef, SliceResult
from tests.support.runs import make_run

DANGEROUS = ("=", "+", "-", "@", "\t", "\r")
HOSTILE = ['=HYPERLINK("http://x","y")', "+1+1", "-cmd", "@SUM(A1)", "\t=1", "\r=1"]


def make_finding(root: Path, rank: int = 1, *, relpath: str = "ct/IM0001.dcm", **series_fields):
    record = FileRecord(
        path=root / relpath,
        relpath=relpath,
        size_bytes=1234,
        sha256="ef" * 32,
        kind="dicom",
        status="scored",
    )
    ref = SliceRef(
        path=record.path,
        frame=None,
        sop_instance_uid="1.2.3.4.5",
        instance_number=7,
        position=(-120.5, -250.25, -12.5),
        location=-12.5,
    )
    fields = dict(
        key="1.2.3.9",
        kind="dicom",
        study_uid="1.2.3",
        series_uid="1.2.3.9",
        modality="CT",
        description="Chest, 1.25 mm",
        patient_id="P001",
        patient_name="Doe^Jane",
        study_date="20261130",
        rows=512,
        columns=512,
        slices=[ref],
    )
    fields.update(series_fields)
    series = Series(**fields)
    result = SliceResult(series.key, 0, 0.0123456789, 96, 144, 96, 30, 6)
    return Finding(rank=rank, result=result, series=series, slice=ref, file=record)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def study(tmp_path: Path) -> Path:
    root = tmp_path / "study"
    (root / "ct").mkdir(parents=True)
    return root


def test_findings_csv_columns_and_values(study: Path, tmp_path: Path) -> None:
    finding = make_finding(study)
    files = write_report(tmp_path / "out", make_run(study), [finding], [finding.file])
    with files.findings_csv.open(newline="", encoding="utf-8") as handle:
        header = next(csv.reader(handle))
    assert tuple(header) == FINDINGS_COLUMNS + PHI_COLUMNS
    (row,) = read_csv(files.findings_csv)
    assert float(row["score"]) == 0.0123456789
    assert row["reduction"] == "mean_sq"
    assert row["frame"] == ""
    assert (row["slice_index"], row["slice_number"]) == ("0", "1")  # machines 0-, people 1-based
    assert (row["tile_x"], row["tile_y"], row["tile_size"]) == ("96", "144", "96")
    assert row["patient_name"] == "Doe^Jane"
    assert row["series_description"] == "Chest, 1.25 mm"


def test_negative_positions_stay_numbers(study: Path, tmp_path: Path) -> None:
    finding = make_finding(study)
    files = write_report(tmp_path / "out", make_run(study), [finding], [finding.file])
    (row,) = read_csv(files.findings_csv)
    assert row["position_x_mm"] == "-120.5"
    assert float(row["position_y_mm"]) == -250.25
    assert float(row["position_z_mm"]) == float(row["slice_location_mm"]) == -12.5


def test_absent_position_and_frame_are_empty(study: Path, tmp_path: Path) -> None:
    finding = make_finding(study)
    ref = SliceRef(path=finding.slice.path, frame=3)
    finding = Finding(1, finding.result, finding.series, ref, finding.file)
    files = write_report(tmp_path / "out", make_run(study), [finding], [finding.file])
    (row,) = read_csv(files.findings_csv)
    assert row["frame"] == "3"
    assert row["position_x_mm"] == row["slice_location_mm"] == ""


def test_phi_left_out_when_asked(study: Path, tmp_path: Path) -> None:
    finding = make_finding(study)
    run = make_run(study)
    files = write_report(tmp_path / "out", run, [finding], [finding.file], include_phi=False)
    (row,) = read_csv(files.findings_csv)
    assert tuple(row) == FINDINGS_COLUMNS
    sidecar = json.loads(files.sidecar_json.read_text(encoding="utf-8"))
    assert sidecar["include_phi"] is False
    (series_row,) = read_csv(files.series_csv)
    assert tuple(series_row) == SERIES_COLUMNS
    text = files.findings_csv.read_text(encoding="utf-8") + files.sidecar_json.read_text("utf-8")
    text += files.series_csv.read_text(encoding="utf-8")
    assert "Doe^Jane" not in text and "P001" not in text and "20261130" not in text


@pytest.mark.parametrize("hostile", HOSTILE)
def test_formula_like_text_is_neutralised(study: Path, tmp_path: Path, hostile: str) -> None:
    finding = make_finding(
        study,
        relpath=hostile + ".dcm",
        patient_name=hostile,
        description=hostile,
        patient_id=hostile,
    )
    record = FileRecord(study / "x", hostile, None, None, "unknown", "error", reason=hostile)
    files = write_report(tmp_path / "out", make_run(study), [finding], [finding.file, record])
    (row,) = read_csv(files.findings_csv)
    shown = printable(hostile)  # a leading tab or CR is written as \t or \r
    quoted = "'" + shown if shown.startswith(("=", "+", "-", "@")) else shown
    for column in ("file", "patient_name", "series_description", "patient_id"):
        assert row[column] == (quoted + ".dcm" if column == "file" else quoted), column
        assert not row[column].startswith(DANGEROUS)
    assert float(row["position_x_mm"]) == -120.5
    (series_row,) = read_csv(files.series_csv)
    for column in ("file", "patient_name", "series_description", "patient_id"):
        assert series_row["top_file" if column == "file" else column] == row[column], column
    error_row = read_csv(files.files_csv)[1]
    assert error_row["file"] == error_row["reason"] == quoted
    sidecar = json.loads(files.sidecar_json.read_text(encoding="utf-8"))
    assert sidecar["top_findings"][0]["patient_name"] == shown  # JSON: not a spreadsheet


def test_commas_quotes_newlines_and_nul_round_trip(study: Path, tmp_path: Path) -> None:
    tricky = 'Head, "neck"\nline two; ünïcode'
    finding = make_finding(study, description=tricky, patient_name="A\x00B")
    files = write_report(tmp_path / "out", make_run(study), [finding], [finding.file])
    (row,) = read_csv(files.findings_csv)
    assert row["series_description"] == 'Head, "neck"\\nline two; ünïcode'  # one line
    assert row["patient_name"] == "A\\x00B"
    assert "\x00" not in files.findings_csv.read_text(encoding="utf-8")


TERMINAL_ATTACKS = [
    "\x1b[2J\x1b[H",  # clear the screen of whoever runs cat findings.csv
    "ok\rEVIL",  # a carriage return that hides the start of the line
    "a\nb",  # a line that is not a row
    "\x9b31mred",  # C1 control sequence introducer
    "name\u202egpj.exe",  # right-to-left override
    "bell\x07del\x7f",
]


@pytest.mark.parametrize("hostile", TERMINAL_ATTACKS)
def test_control_characters_are_escaped_in_every_csv_and_json(
    study: Path, tmp_path: Path, hostile: str
) -> None:
    finding = make_finding(
        study, relpath=hostile + ".dcm", patient_name=hostile, description=hostile,
        patient_id=hostile, key=hostile,
    )  # fmt: skip
    record = FileRecord(study / "x", hostile, None, None, "unknown", "error", reason=hostile)
    run = make_run(study, command_line=["btd", "scan", hostile])
    files = write_report(tmp_path / "out", run, [finding], [finding.file, record])
    for path in (files.findings_csv, files.series_csv, files.files_csv, files.sidecar_json):
        text = path.read_text(encoding="utf-8")
        body = text.replace("\r\n", "").replace("\n", "")  # the files' own line ends
        assert all(c.isprintable() for c in body), (
            path.name,
            [c for c in body if not c.isprintable()],
        )
        assert printable(hostile) in text.replace("\\\\", "\\"), path.name


def test_series_are_ranked_by_their_most_suspicious_slice(study: Path, tmp_path: Path) -> None:
    def finding(rank: int, key: str, score: float, index: int) -> Finding:
        made = make_finding(study, rank, key=key, series_uid=key, description=f"series {key}")
        return replace(made, result=replace(made.result, score=score, slice_index=index))

    ranked = [  # as btd_core.findings.ranking.rank orders them: highest slice score first
        finding(1, "2.9", 7.5, 4),
        finding(2, "1.9", 6.0, 0),
        finding(3, "2.9", 5.0, 1),
        finding(4, "1.9", 1.0, 2),
        finding(5, "3.9", -0.5, 0),
    ]
    files = write_report(tmp_path / "out", make_run(study), ranked, [ranked[0].file])
    rows = read_csv(files.series_csv)
    assert [r["series_uid"] for r in rows] == ["2.9", "1.9", "3.9"]
    assert [r["rank"] for r in rows] == ["1", "2", "3"]
    assert [r["slices_scored"] for r in rows] == ["2", "2", "1"]
    assert [r["top_slice_rank"] for r in rows] == ["1", "2", "5"]
    assert [float(r["score"]) for r in rows] == [7.5, 6.0, -0.5]  # a negative z stays a number
    assert (rows[0]["top_slice_index"], rows[0]["top_slice_number"]) == ("4", "5")
    sidecar = json.loads(files.sidecar_json.read_text(encoding="utf-8"))
    assert [s["series_uid"] for s in sidecar["series_ranking"]] == ["2.9", "1.9", "3.9"]
    assert sidecar["series_ranking"][0]["top_slice_number"] == 5
    top = sidecar["top_findings"][0]
    assert (top["slice_index"], top["slice_number"]) == (4, 5)


def test_files_csv_lists_every_file(study: Path, tmp_path: Path) -> None:
    finding = make_finding(study)
    other = FileRecord(study / "notes.txt", "notes.txt", 12, "01" * 32, "unknown", "skipped", "no")
    files = write_report(tmp_path / "out", make_run(study), [finding], [finding.file, other])
    rows = read_csv(files.files_csv)
    assert tuple(rows[0]) == FILES_COLUMNS
    expected = ("notes.txt", "12", "01" * 32, "unknown", "skipped", "no", "")
    assert rows[1] == dict(zip(FILES_COLUMNS, expected, strict=True))
    assert rows[0]["size_bytes"] == "1234" and rows[0]["reason"] == ""


def test_sidecar_contents_and_hashes(study: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "overlays").mkdir()
    png = out / "overlays" / "rank001.png"
    png.write_bytes(b"\x89PNG fake")
    findings = [make_finding(study, rank) for rank in range(1, 26)]
    skipped = FileRecord(study / "a", "a", 1, "00" * 32, "unknown", "skipped", "not an image")
    run = make_run(study)
    files = write_report(out, run, findings, [findings[0].file, skipped], extra_files=[png])
    sidecar = json.loads(files.sidecar_json.read_text(encoding="utf-8"))
    assert sidecar["tool"] == {"name": "btd", "version": "0.1.0"}
    assert sidecar["model"]["card"] == run.model_card.to_metadata()
    assert sidecar["model"]["sha256"] == "cd" * 32
    assert sidecar["provider"] == {"in_use": "CPUExecutionProvider", "note": ""}
    assert sidecar["settings"]["body_threshold"] == -500.0
    assert sidecar["counts"]["files"] == {"pending": 0, "scored": 1, "skipped": 1, "error": 0}
    assert sidecar["counts"]["findings"] == 25
    assert len(sidecar["top_findings"]) == 20
    assert sidecar["top_findings"][0]["position_x_mm"] == -120.5
    report_files = sidecar["report_files"]
    assert set(report_files) == {"findings.csv", "series.csv", "files.csv", "overlays/rank001.png"}
    for name, digest in report_files.items():
        assert digest == file_sha256(out / name)


def test_timestamps_are_utc_iso8601(study: Path, tmp_path: Path) -> None:
    plus_two = timezone(timedelta(hours=2))
    run = make_run(study, started_utc=datetime(2026, 12, 1, 11, 0, tzinfo=plus_two))
    files = write_report(tmp_path / "out", run, [], [])
    sidecar = json.loads(files.sidecar_json.read_text(encoding="utf-8"))
    for key in ("started_utc", "ended_utc"):
        stamp = datetime.fromisoformat(sidecar[key].replace("Z", "+00:00"))
        assert stamp.utcoffset() == timedelta(0)
    assert sidecar["started_utc"].startswith("2026-12-01T09:00:00")


def test_naive_timestamp_is_refused(study: Path, tmp_path: Path) -> None:
    run = make_run(study, ended_utc=datetime(2026, 12, 1, 9, 0))
    with pytest.raises(ValueError, match="time zone"):
        write_report(tmp_path / "out", run, [], [])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("inside", [".", "reports", "ct/../reports/deeper"])
def test_out_dir_inside_study_root_is_refused(study: Path, inside: str) -> None:
    before = sorted(study.rglob("*"))
    finding = make_finding(study)
    with pytest.raises(ValueError, match="study root"):
        write_report(study / inside, make_run(study), [finding], [finding.file])
    assert sorted(study.rglob("*")) == before


def test_symlink_into_study_root_is_refused(study: Path, tmp_path: Path) -> None:
    link = tmp_path / "looks_elsewhere"
    link.symlink_to(study, target_is_directory=True)
    with pytest.raises(ValueError, match="study root"):
        write_report(link / "out", make_run(study), [], [])
    assert not (study / "out").exists()


def test_no_temporary_files_left_behind(study: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_report(out, make_run(study), [make_finding(study)], [])
    write_report(out, make_run(study), [make_finding(study)], [])  # overwrites in place
    names = sorted(p.name for p in out.iterdir())
    assert names == ["files.csv", "findings.csv", "report.json", "series.csv"]


def test_library_versions_and_utc_now() -> None:
    versions = library_versions()
    assert set(versions) >= {"python", "numpy", "onnxruntime", "pydicom", "pillow", "rich"}
    assert versions["numpy"] != "not installed"
    assert utc_now().utcoffset() == timedelta(0)


@pytest.mark.parametrize("text", [*HOSTILE, "-12.5", "=1\x00"])
def test_neutralise_cell_examples(text: str) -> None:
    shown = printable(text)
    assert neutralise_cell(text) == ("'" + shown if shown[0] in "=+-@" else shown)


@given(st.text())
def test_neutralise_cell_never_starts_dangerous_nor_holds_control_characters(text: str) -> None:
    out = neutralise_cell(text)
    assert not out.startswith(DANGEROUS)
    assert out.isprintable() or out == ""


@given(st.text().filter(lambda s: s.isprintable() and not s.startswith(DANGEROUS)))
def test_neutralise_cell_keeps_safe_text(text: str) -> None:
    assert neutralise_cell(text) == text


@pytest.mark.skipif(os.name != "posix", reason="file modes and the umask are POSIX")
@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_report_files_are_as_readable_as_the_umask_allows(
    study: Path, tmp_path: Path, umask: int, mode: int
) -> None:
    """Written atomically, yet with ``0o666 & ~umask`` like any new file (not mkstemp's 0600)."""
    finding = make_finding(study)
    before = os.umask(umask)
    try:
        files = write_report(tmp_path / "out", make_run(study), [finding], [finding.file])
        single = atomic_write_bytes(tmp_path / "single.bin", b"x")
    finally:
        os.umask(before)
    for path in (files.findings_csv, files.series_csv, files.files_csv, files.sidecar_json, single):
        assert stat.S_IMODE(path.stat().st_mode) == mode, (path.name, oct(path.stat().st_mode))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "single.bin", "study"]
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.endswith(".tmp")]


def test_a_failed_atomic_write_leaves_neither_file_nor_temporary(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    target.write_bytes(b"old")
    with pytest.raises(TypeError):
        atomic_write_bytes(target, object())  # type: ignore[arg-type]
    assert target.read_bytes() == b"old" and sorted(tmp_path.iterdir()) == [target]


@pytest.mark.parametrize(
    ("score", "shown"),
    [
        (6.2367e-05, "0.0000624"),  # an uncalibrated scan's residual energy
        (0.00081378, "0.000814"),
        (2.5, "2.5"),
        (12.3456, "12.3"),
        (-3.214, "-3.21"),
        (4567.8, "4568"),
        (1.234e-7, "1.23e-07"),
        (0.0, "0"),
        (float("nan"), "nan"),
    ],
)
def test_a_score_is_shown_with_three_significant_digits(score, shown):
    assert score_text(score) == shown
