"""``btd scan --dicom``: findings as a DICOM SR (TID 1500) and a binary SEG, read back.

A real study (two CT series of pydicom's CT_small.dcm, one with a planted noise block, and
the enhanced multi-frame eCT_Supplemental.dcm) is scanned by the real ``btd scan --dicom``
with the torch-free scorer; the objects in ``REPORT/dicom`` are read back with highdicom
and pydicom: each ROI is the worst window of ``findings.csv`` on the slice's SOP instance
(and frame), patient and study are the source's, the study folder is unchanged, and
``dciodvfy`` (dicom3tools) finds no error when it is installed.  A ``.npy`` study gets a
note and no DICOM; ``--no-phi`` is refused; a header highdicom refuses is a note, not a crash.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import Comprehensive3DSRStorage, SegmentationStorage

from btd_core.cli.main import main as btd_main
from btd_core.exit_status import ExitStatus
from btd_core.findings.dicom_codes import AUTHENTICITY, SCORE_UNIT, SUSPECTED_SYNTHETIC
from btd_core.findings.dicom_conformance import METHOD_UNKNOWN
from tests.study_builder import tree_fingerprint, write_series

TOP = 2
"""``--top`` of the scans: the ROIs per series."""


def scan(study: Path, model: Path, out: Path, *extra: str) -> int:
    args = ["scan", str(study), "--model", str(model), "--out", str(out), "--provider", "cpu"]
    return btd_main([*args, "--top", str(TOP), *extra])


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory, ct_onnx: Path) -> dict:
    """One ``btd scan --dicom`` of a three-series study: its report, sources and fingerprints."""
    root = tmp_path_factory.mktemp("dicom_sr")
    study = root / "study"
    planted = write_series(
        study / "a", "CT_small.dcm", 3, seed=3, planted_index=1, planted_box=(20, 30, 40)
    )
    plain = write_series(study / "b", "CT_small.dcm", 2, seed=5)
    shutil.copy(get_testdata_file("eCT_Supplemental.dcm"), study / "enhanced.dcm")
    before = tree_fingerprint(study)
    out = root / "report"
    status = scan(study, ct_onnx, out, "--dicom")
    with (out / "findings.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    sources = {}
    for path in [*planted.files, *plain.files, study / "enhanced.dcm"]:
        dataset = pydicom.dcmread(path, stop_before_pixels=True)
        sources[dataset.SOPInstanceUID] = dataset
    return {
        "status": status,
        "study": study,
        "out": out,
        "unchanged": tree_fingerprint(study) == before,
        "rows": rows,
        "sources": sources,
        "model": ct_onnx,
    }


def objects(out: Path, suffix: str) -> list[Path]:
    return sorted((out / "dicom").glob(f"series[0-9][0-9][0-9]_{suffix}.dcm"))


def rank_of(group: hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations) -> int:
    """The report rank in an ROI's tracking identifier, ``btd rank N``."""
    return int(str(group.tracking_identifier).split()[-1])


def test_each_dicom_series_gets_an_sr_and_a_seg_and_the_study_is_untouched(scanned):
    assert scanned["status"] == ExitStatus.OK
    assert scanned["unchanged"]
    srs, segs = objects(scanned["out"], "sr"), objects(scanned["out"], "seg")
    assert len(srs) == len(segs) == 3
    assert {pydicom.dcmread(p).SOPClassUID for p in srs} == {Comprehensive3DSRStorage}
    assert {pydicom.dcmread(p).SOPClassUID for p in segs} == {SegmentationStorage}
    scanned_series = {row["series_uid"] for row in scanned["rows"]}
    referenced = {
        hd.sr.srread(p)
        .CurrentRequestedProcedureEvidenceSequence[0]
        .ReferencedSeriesSequence[0]
        .SeriesInstanceUID
        for p in srs
    }
    assert referenced == scanned_series


def test_each_roi_is_the_worst_window_of_its_slice_on_its_source_instance(scanned):
    by_rank = {int(row["rank"]): row for row in scanned["rows"]}
    for path in objects(scanned["out"], "sr"):
        groups = hd.sr.srread(path).content.get_planar_roi_measurement_groups()
        ranks = [rank_of(group) for group in groups]
        series_uid = by_rank[ranks[0]]["series_uid"]
        in_series = [int(r["rank"]) for r in scanned["rows"] if r["series_uid"] == series_uid]
        assert ranks == sorted(in_series)[:TOP]  # the top --top slices of that series
        for rank, group in zip(ranks, groups, strict=True):
            row = by_rank[rank]
            x, y, size = (int(row[k]) for k in ("window_x", "window_y", "window_size"))
            assert group.roi.graphic_type == hd.sr.GraphicTypeValues.POLYLINE
            closed = [[x, y], [x + size, y], [x + size, y + size], [x, y + size], [x, y]]
            assert group.roi.value.tolist() == closed
            reference = group.roi.ContentSequence[0].ReferencedSOPSequence[0]
            assert reference.ReferencedSOPInstanceUID == row["sop_instance_uid"]
            source = scanned["sources"][row["sop_instance_uid"]]
            assert reference.ReferencedSOPClassUID == source.SOPClassUID
            frame = reference.get("ReferencedFrameNumber")
            assert (None if frame is None else int(frame) - 1) == (
                int(row["frame"]) if row["frame"] else None
            )
            (score,) = group.get_measurements()
            assert score.value == pytest.approx(float(row["score"]), rel=1e-6)
            assert score.unit == SCORE_UNIT
            (evaluation,) = group.get_qualitative_evaluations()
            assert evaluation.name == AUTHENTICITY
            assert evaluation.value == SUSPECTED_SYNTHETIC
            assert group.finding_type == SUSPECTED_SYNTHETIC


def test_the_objects_carry_the_sources_patient_and_study_and_new_uids(scanned):
    sources = scanned["sources"]
    source_uids = {uid for s in sources.values() for uid in (s.SOPInstanceUID, s.SeriesInstanceUID)}
    for path in objects(scanned["out"], "sr") + objects(scanned["out"], "seg"):
        made = pydicom.dcmread(path)
        if made.SOPClassUID == Comprehensive3DSRStorage:
            evidence = made.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence
            referenced = [
                item.ReferencedSOPInstanceUID for item in evidence[0].ReferencedSOPSequence
            ]
        else:
            referenced = [
                item.ReferencedSOPInstanceUID
                for item in made.ReferencedSeriesSequence[0].ReferencedInstanceSequence
            ]
        assert referenced and set(referenced) <= set(sources)  # the scanned instances
        source = sources[referenced[0]]
        for keyword in ("PatientID", "PatientName", "StudyInstanceUID", "StudyDate"):
            assert made.get(keyword) == source.get(keyword), keyword
        assert made.SOPInstanceUID not in source_uids
        assert made.SeriesInstanceUID not in source_uids
        assert made.Manufacturer == "btd"


def text_items(dataset: pydicom.Dataset) -> dict[str, list[str]]:
    """Every TEXT / UIDREF content item of an SR, by its concept name's meaning."""
    found: dict[str, list[str]] = {}
    for item in dataset.get("ContentSequence", []):
        name = item.ConceptNameCodeSequence[0].CodeMeaning
        value = item.get("TextValue", item.get("UID"))
        if value is not None:
            found.setdefault(name, []).append(str(value))
        for key, values in text_items(item).items():
            found.setdefault(key, []).extend(values)
    return found


def test_the_observer_is_btd_and_the_model(scanned):
    report = json.loads((scanned["out"] / "report.json").read_text())
    sha = report["model"]["sha256"]
    texts = text_items(pydicom.dcmread(objects(scanned["out"], "sr")[0]))
    assert texts["Device Observer Name"] == ["btd"]
    assert texts["Device Observer Model Name"] == [f"btd {report['tool']['version']}"]
    assert texts["Device Observer Serial Number"] == [sha]
    assert set(texts["Algorithm Name"]) == {"btd"}
    assert set(texts["Algorithm Version"]) == {report["tool"]["version"]}
    assert f"model sha256 {sha}" in texts["Algorithm Parameters"]
    seg = pydicom.dcmread(objects(scanned["out"], "seg")[0])
    assert seg.DeviceSerialNumber == sha and seg.SoftwareVersions == report["tool"]["version"]


def test_each_seg_frame_marks_the_worst_window_of_its_slice(scanned):
    by_sop = {}
    for row in scanned["rows"]:
        by_sop[(row["sop_instance_uid"], row["frame"])] = row
    for path in objects(scanned["out"], "seg"):
        seg = hd.seg.segread(path)
        assert (seg.SegmentationType, seg.SegmentationFractionalType) == ("FRACTIONAL", "OCCUPANCY")
        mask = seg.pixel_array  # [frames, rows, columns], 0 .. MaximumFractionalValue
        for index, frame in enumerate(seg.PerFrameFunctionalGroupsSequence):
            derivation = frame.DerivationImageSequence[0].SourceImageSequence[0]
            number = derivation.get("ReferencedFrameNumber")
            key = (derivation.ReferencedSOPInstanceUID, str(int(number) - 1) if number else "")
            row = by_sop[key]
            x, y, size = (int(row[k]) for k in ("window_x", "window_y", "window_size"))
            expected = np.zeros(mask.shape[1:], dtype=mask.dtype)
            expected[y : y + size, x : x + size] = seg.MaximumFractionalValue  # occupancy 1.0
            np.testing.assert_array_equal(mask[index], expected)


def test_report_json_hashes_the_dicom_files_and_says_what_was_written(scanned):
    out = scanned["out"]
    report = json.loads((out / "report.json").read_text())
    hashes = report["report_files"]
    for path in [*objects(out, "sr"), *objects(out, "seg"), out / "dicom" / "README.txt"]:
        name = path.relative_to(out).as_posix()
        assert hashes[name] == hashlib.sha256(path.read_bytes()).hexdigest()
    series = report["settings"]["dicom"]["series"]
    assert len(series) == 3 and not any(item["note"] for item in series)


def dciodvfy_errors(out: Path) -> dict[str, list[str]]:
    """``dciodvfy``'s error lines for each SR and SEG in ``out/dicom`` (skips without it)."""
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy not installed (Debian package dicom3tools)")
    found = {}
    for path in objects(out, "sr") + objects(out, "seg"):
        run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
        lines = (run.stdout + run.stderr).splitlines()
        found[path.name] = [line for line in lines if line.startswith("Error")]
    return found


def test_dciodvfy_finds_no_error(scanned):
    errors = dciodvfy_errors(scanned["out"])
    assert len(errors) == 6
    assert not any(errors.values()), errors


def rewrite(files: list[Path], **changes: object) -> None:
    """Set (or, for ``None``, delete) attributes of each file's header in place."""
    for path in files:
        dataset = pydicom.dcmread(path)
        for keyword, value in changes.items():
            if value is None:
                delattr(dataset, keyword)
            else:
                setattr(dataset, keyword, value)
        dataset.save_as(path)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, ct_onnx: Path) -> dict:
    """``btd scan --dicom`` of the awkward sources: the report, and series UID -> folder."""
    root = tmp_path_factory.mktemp("dicom_corpus")
    study = root / "study"
    built = {
        "no_thickness": write_series(study / "no_thickness", "CT_small.dcm", 3, spacing_mm=2.5),
        "empty_thickness": write_series(study / "empty_thickness", "CT_small.dcm", 2, seed=2),
        "deidentified": write_series(study / "deidentified", "CT_small.dcm", 2, seed=3),
        "lone": write_series(study / "lone", "CT_small.dcm", 1, seed=4),
    }
    # CT_small.dcm says Slice Thickness and Spacing Between Slices 5 mm
    rewrite(built["no_thickness"].files, SliceThickness=None, SpacingBetweenSlices=None)
    rewrite(built["empty_thickness"].files, SliceThickness="")
    rewrite(built["lone"].files, SliceThickness="", SpacingBetweenSlices=None)
    rewrite(built["deidentified"].files, PatientIdentityRemoved="YES")
    (study / "real_693").mkdir()
    shutil.copy(get_testdata_file("693_UNCI.dcm"), study / "real_693" / "693_UNCI.dcm")
    out = root / "report"
    status = scan(study, ct_onnx, out, "--dicom")
    folders = {series.series_uid: name for name, series in built.items()}
    real = pydicom.dcmread(get_testdata_file("693_UNCI.dcm"), stop_before_pixels=True)
    folders[real.SeriesInstanceUID] = "real_693"
    series = json.loads((out / "report.json").read_text())["settings"]["dicom"]["series"]
    return {"status": status, "out": out, "folders": folders, "series": series}


def corpus_objects(corpus: dict, folder: str) -> dict[str, pydicom.Dataset]:
    """``{"sr": ..., "seg": ...}``: the objects made for the series of ``folder``."""
    made = {}
    for path in objects(corpus["out"], "*"):
        dataset = pydicom.dcmread(path)
        uid = (
            dataset.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
            if dataset.SOPClassUID == Comprehensive3DSRStorage
            else dataset.ReferencedSeriesSequence[0]
        ).SeriesInstanceUID
        if corpus["folders"][uid] == folder:
            made["sr" if dataset.SOPClassUID == Comprehensive3DSRStorage else "seg"] = dataset
    return made


def test_dciodvfy_finds_no_error_in_objects_of_awkward_sources(corpus):
    assert corpus["status"] == ExitStatus.OK
    errors = dciodvfy_errors(corpus["out"])
    assert len(errors) == 8  # five SRs; SEGs but for the lone slice and 693 (no frame of ref.)
    assert not any(errors.values()), errors


@pytest.mark.parametrize(
    ("folder", "thickness"),
    [("no_thickness", 2.5), ("empty_thickness", 5.0)],  # measured; the header's spacing
)
def test_a_seg_of_slices_without_thickness_takes_the_spacing_between_them(
    corpus, folder, thickness
):
    seg = corpus_objects(corpus, folder)["seg"]
    measures = seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    assert float(measures.SliceThickness) == pytest.approx(thickness)


def test_a_lone_slice_without_thickness_gets_an_sr_and_a_note_instead_of_a_seg(corpus):
    assert set(corpus_objects(corpus, "lone")) == {"sr"}
    notes = [item["note"] for item in corpus["series"] if item["files"]]
    assert any("no SEG" in note and "no Slice Thickness" in note for note in notes), notes


@pytest.mark.parametrize("folder", ["deidentified", "real_693"])
def test_objects_of_de_identified_sources_say_the_method_is_unknown(corpus, folder):
    made = corpus_objects(corpus, folder)
    assert made and set(made) <= {"sr", "seg"}
    for dataset in made.values():
        assert dataset.PatientIdentityRemoved == "YES"
        assert dataset.DeidentificationMethod == METHOD_UNKNOWN


def test_a_npy_study_gets_a_note_and_no_dicom(ct_onnx, tmp_path, capsys):
    study = tmp_path / "study"
    study.mkdir()
    rng = np.random.default_rng(0)
    np.save(study / "volume.npy", rng.normal(40, 30, (2, 128, 128)).astype(np.int16))
    before = tree_fingerprint(study)
    out = tmp_path / "report"
    assert scan(study, ct_onnx, out, "--dicom") == ExitStatus.OK
    printed = " ".join(capsys.readouterr().out.split())
    assert "not DICOM (.npy series)" in printed
    assert not list((out / "dicom").glob("*.dcm"))
    assert "not DICOM (.npy series)" in (out / "dicom" / "README.txt").read_text()
    (item,) = json.loads((out / "report.json").read_text())["settings"]["dicom"]["series"]
    assert item["files"] == [] and item["note"].startswith("not DICOM")
    assert tree_fingerprint(study) == before


def test_dicom_with_no_phi_is_refused_before_any_work(scanned, ct_onnx, tmp_path, capsys):
    out = tmp_path / "report"
    assert scan(scanned["study"], ct_onnx, out, "--dicom", "--no-phi") == ExitStatus.CANNOT_RUN
    assert "cannot honour --no-phi" in " ".join(capsys.readouterr().out.split())
    assert not out.exists()


def test_a_header_highdicom_refuses_is_a_note_not_a_crash(ct_onnx, tmp_path, capsys):
    study = tmp_path / "study"
    built = write_series(study / "ct", "CT_small.dcm", 2, seed=7)
    for path in built.files:  # a SEG needs the frame of reference; the SR does not
        dataset = pydicom.dcmread(path)
        del dataset.FrameOfReferenceUID
        dataset.save_as(path)
    out = tmp_path / "report"
    assert scan(study, ct_onnx, out, "--dicom") == ExitStatus.OK
    printed = " ".join(capsys.readouterr().out.split())
    assert "no SEG: ValueError" in printed and "Frame Of Reference" in printed
    assert [p.name for p in objects(out, "sr")] == ["series001_sr.dcm"]
    assert not objects(out, "seg")
    (item,) = json.loads((out / "report.json").read_text())["settings"]["dicom"]["series"]
    assert item["files"] == ["dicom/series001_sr.dcm"] and "no SEG" in item["note"]


def test_without_a_window_the_roi_is_the_worst_tile(ct_onnx, tmp_path):
    study = tmp_path / "study"
    write_series(study / "ct", "CT_small.dcm", 2, seed=9, planted_index=0, planted_box=(9, 9, 40))
    out = tmp_path / "report"
    assert scan(study, ct_onnx, out, "--dicom", "--score", "tile") == ExitStatus.OK
    with (out / "findings.csv").open(newline="") as handle:
        rows = {int(row["rank"]): row for row in csv.DictReader(handle)}
    groups = hd.sr.srread(objects(out, "sr")[0]).content.get_planar_roi_measurement_groups()
    assert len(groups) == 2
    for group in groups:
        row = rows[rank_of(group)]
        assert row["window_size"] == ""
        x, y, size = (int(row[k]) for k in ("tile_x", "tile_y", "tile_size"))
        assert group.roi.value[0].tolist() == [x, y]
        assert group.roi.value[2].tolist() == [x + size, y + size]


def test_a_rerun_without_dicom_leaves_no_earlier_objects(scanned, tmp_path: Path):
    """``--overwrite`` without ``--dicom`` into a folder with an earlier ``--dicom`` report:
    the earlier SR and SEG go (they would be taken for this report's), a file btd did not
    write stays; the new report.json names no DICOM file."""
    out = tmp_path / "report"
    shutil.copytree(scanned["out"], out)
    (out / "dicom" / "examiner_notes.txt").write_text("kept\n")
    assert scan(scanned["study"], Path(scanned["model"]), out, "--overwrite") in (0, 1)
    assert sorted(p.name for p in (out / "dicom").iterdir()) == ["examiner_notes.txt"]
    sidecar = json.loads((out / "report.json").read_text())
    assert not any(name.startswith("dicom/") for name in sidecar["report_files"])
    (out / "dicom" / "examiner_notes.txt").unlink()
    assert scan(scanned["study"], Path(scanned["model"]), out, "--overwrite") in (0, 1)
    assert not (out / "dicom").exists()  # emptied: the folder goes too
