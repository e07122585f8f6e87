"""``btd archive``: finding studies, the manifest, resume, failures, Ctrl-C and studies.csv.

Real DICOM files (pydicom's CT_small.dcm, 128 x 128, rewritten as new studies by
tests/study_builder.py), real .npy and PNG slices cut from it, and a real onnxruntime
scorer (tests/onnx_scorer.py, 32 px patches) in real worker processes.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from urllib.parse import quote, unquote

import numpy as np
import pytest

from btd_core.archive import driver
from btd_core.archive.driver import ArchiveError, run_archive
from btd_core.archive.executor import Event
from btd_core.archive.index import read_archive
from btd_core.archive.local import LocalExecutor
from btd_core.archive.manifest import ManifestError, identity_differences
from btd_core.archive.plan import plan_archive
from btd_core.cli.main import main
from btd_core.safe_text import printable
from btd_core.scoring.calibration import sidecar_path
from btd_core.scoring.strategy import ScoreModeError, ScoreRequest
from btd_core.study.evidence import OutputInsideEvidence
from tests.onnx_scorer import build_scorer
from tests.study_builder import read_source, tree_fingerprint, write_series
from tests.support.archive_tree import (
    HOSTILE_FOLDER,
    HOSTILE_NAME,
    build_archive,
    config_for,
    real_hu_slices,
    report_csvs,
    run_embedded,
)
from tests.support.html_page import read_page, unsafe_markup

REPORT_CSVS = ("findings.csv", "series.csv", "files.csv")


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real ONNX CT scorer with 32 px patches (fits 128 px slices)."""
    return build_scorer(tmp_path_factory.mktemp("model") / "ct32.onnx", patch_size=32)


def read_csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"), newline="")))


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory, model: Path):
    """The archive built once and audited once (2 worker processes): root, out, result."""
    base = tmp_path_factory.mktemp("archive")
    root = base / "root"
    built = build_archive(root)
    before = tree_fingerprint(root)
    result = run_embedded(root, base / "out", model, jobs=2)
    assert tree_fingerprint(root) == before, "the archive root was written into"
    return root, base / "out", result, built


def test_studies_are_found_by_uid_across_folders_and_by_folder(tmp_path: Path):
    root = tmp_path / "root"
    built = build_archive(root)
    plan = plan_archive(root)
    keys = {unit.key: unit for unit in plan.units}
    split, other = f"study:{built['split_uid']}", f"study:{built['other_uid']}"
    assert set(keys) == {
        "folder:case_a",
        "folder:case_b",
        "folder:npy_case",
        "folder:png_case",
        "folder:corrupt",
        f"folder:{HOSTILE_FOLDER}",
        split,
        other,
    }
    assert keys["folder:case_a"].files is None  # a whole folder: what btd scan reads
    assert keys[split].root == "." and len(keys[split].files or ()) == 4
    assert {f.split("/")[0] for f in keys[split].files or ()} == {"export1", "export2"}
    assert keys[other].root == "export1/s2"
    folders = {unit.folder_name for unit in plan.units}
    assert len(folders) == len(plan.units)
    assert all(name[0] not in ".-=" and "/" not in name for name in folders)


def test_every_study_is_reported_ranked_and_hashed(archive):
    _, out, result, _ = archive
    assert result.units == 8 and result.done_now == 8 and not result.cancelled
    rows = read_csv(out / "studies.csv")
    assert len(rows) == 8
    by_study = {row["study"]: row for row in rows}
    assert by_study["folder:case_a"]["rank"] == "1"  # the planted noise block ranks first
    assert by_study["folder:corrupt"]["status"] == "unscored"
    assert by_study["folder:corrupt"]["rank"] == ""
    assert (
        "truncated" in by_study["folder:corrupt"]["reason"].lower()
        or by_study["folder:corrupt"]["reason"]
    )
    scored = [row for row in rows if row["rank"]]
    scores = [float(row["top_score"]) for row in scored]
    assert scores == sorted(scores, reverse=True)
    assert {row["status"] for row in scored} == {"scored"}
    record = json.loads((out / "archive.json").read_text())
    assert record["counts"]["studies"] == 8
    assert record["counts"]["by_status"]["scored"] == 7
    csv_sha = hashlib.sha256((out / "studies.csv").read_bytes()).hexdigest()
    assert record["report_files"]["studies.csv"] == csv_sha
    assert len(record["study_reports"]) == 8
    for name, digest in record["study_reports"].items():
        report = out / name
        assert hashlib.sha256(report.read_bytes()).hexdigest() == digest
        inner = json.loads(report.read_text())
        for file, file_digest in inner["report_files"].items():
            data = (report.parent / file).read_bytes()
            assert hashlib.sha256(data).hexdigest() == file_digest
    assert not list((out / "studies").glob(".*")), "no partial folder left behind"


def test_a_study_report_is_what_btd_scan_writes(archive, model: Path, tmp_path: Path):
    root, out, _, _ = archive
    index = {s.key: s for s in read_archive(out).studies}
    for key, folder in (("folder:case_a", "case_a"), ("folder:npy_case", "npy_case")):
        scanned = tmp_path / folder
        argv = ["scan", str(root / folder), "--model", str(model), "--out", str(scanned)]
        assert main([*argv, "--provider", "cpu", "--overlays", "3", "--workers", "1"]) == 0
        report = index[key].report_dir
        assert report is not None
        for name in REPORT_CSVS:
            assert (report / name).read_bytes() == (scanned / name).read_bytes(), name
        ours, theirs = (json.loads((d / "report.json").read_text()) for d in (report, scanned))
        assert ours["top_findings"] == theirs["top_findings"]
        assert ours["counts"] == theirs["counts"]
        assert ours["model"] == theirs["model"]
        assert sorted((report / "overlays").iterdir()) != []


def test_studies_csv_neutralises_hostile_names(archive):
    _, out, _, _ = archive
    text = (out / "studies.csv").read_text(encoding="utf-8")
    assert "\x1b" not in text and "\r\nX" not in text
    rows = {row["study"]: row for row in read_csv(out / "studies.csv")}
    hostile = next(row for key, row in rows.items() if "HYPERLINK" in key)
    assert hostile["study"].startswith("folder:=HYPERLINK")  # begins with "folder:": safe
    assert hostile["label"].startswith("'=HYPERLINK")  # the bare folder name: neutralised
    assert "\\x1b" in hostile["label"]
    assert hostile["patient_name"].startswith("'=cmd")
    assert "\\r\\n" in hostile["patient_name"]
    for row in rows.values():
        for cell in row.values():
            assert not (cell or "").startswith(("=", "+", "-", "@")), cell


def test_index_html_ranks_the_studies_and_links_each_report_html(archive):
    """``OUT/index.html``: the rows and order of studies.csv, each done study linked to its
    own ``report.html`` by a relative link, hostile folder and patient names literal."""
    _, out, _, _ = archive
    page = read_page((out / "index.html").read_text(encoding="utf-8"))
    assert unsafe_markup(page) == []
    rows = read_csv(out / "studies.csv")
    shown = page.tables["studies-table"][1:]
    assert [row[0] for row in shown] == [row["rank"] for row in rows]
    assert [row[2].split(":")[0] for row in shown] == [row["status"] for row in rows]
    links = [element.attrs["href"] for element in page.find("a")]
    assert len(links) == len(rows) == 8  # every study here has a report
    for href, row in zip(links, rows, strict=True):
        assert href == quote(f"{row['report_folder']}/report.html")
        target = out / unquote(href)
        assert target.is_file() and (target.parent / "report.json").is_file()
    text = page.text
    assert printable(HOSTILE_FOLDER) in text and printable(HOSTILE_NAME) in text
    assert "\\x1b" in text and "\x1b" not in (out / "index.html").read_text()  # ESC escaped
    record = json.loads((out / "archive.json").read_text())
    digest = hashlib.sha256((out / "index.html").read_bytes()).hexdigest()
    assert record["report_files"]["index.html"] == digest


def test_read_archive_gives_the_ranked_studies(archive):
    _, out, _, _ = archive
    index = read_archive(out)
    rows = read_csv(out / "studies.csv")
    assert [printable(s.key) for s in index.studies] == [r["study"] for r in rows]
    top = index.studies[0]
    assert top.rank == 1 and top.key == "folder:case_a" and top.top_score is not None
    assert top.report_dir is not None and (top.report_dir / "findings.csv").is_file()
    assert top.source == index.root / "case_a"
    assert index.counts()["unscored"] == 1


def test_a_rerun_skips_what_is_done_and_rescans_what_changed(archive, model: Path, tmp_path: Path):
    root, out, _, _ = archive
    copy_root, copy_out = tmp_path / "root", tmp_path / "out"
    shutil.copytree(root, copy_root)
    shutil.copytree(out, copy_out)
    manifest = sqlite3.connect(copy_out / "manifest.sqlite")
    manifest.execute("UPDATE meta SET value = ? WHERE key = 'root'", (str(copy_root),))
    manifest.commit()
    manifest.close()
    again = run_embedded(copy_root, copy_out, model)
    assert again.done_now == 0 and again.kept == 8  # units redone: 0
    before = report_csvs(copy_out)
    changed = next((copy_root / "case_b").iterdir())
    data = read_source(str(changed))
    data.SeriesDescription = "changed"
    data.save_as(changed, enforce_file_format=True)
    third = run_embedded(copy_root, copy_out, model)
    assert third.done_now == 1 and third.kept == 7 and third.reconcile["changed"] == 1
    after = report_csvs(copy_out)
    differing = {name.split("/")[1] for name in before if before[name] != after[name]}
    assert differing == {next(n.split("/")[1] for n in after if "case_b" in n)}


def test_out_that_is_not_this_archive_is_refused(archive, model: Path, tmp_path: Path):
    root, out, _, _ = archive
    with pytest.raises(OutputInsideEvidence):
        run_embedded(root, root / "case_a" / "out", model)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ArchiveError, match="no archive manifest"):
        run_embedded(root, other, model)
    second = build_scorer(tmp_path / "other.onnx", patch_size=32, reduction="mean_abs")
    with pytest.raises(ManifestError, match="model_sha256"):
        run_embedded(root, out, second)
    assert (other / "notes.txt").read_text() == "mine"


def test_a_dead_worker_fails_its_unit_and_the_rerun_retries_it(
    archive, model: Path, tmp_path: Path
):
    root, reference, _, _ = archive
    out = tmp_path / "out"
    killed: list[str] = []

    def kill_first(state) -> None:  # a worker dies in the middle of a unit
        event: Event | None = state.event
        if event is not None and event.kind == "progress" and not killed:
            killed.append(event.key)
            os.kill(int(event.worker.rsplit(":", 1)[1]), signal.SIGKILL)

    first = run_embedded(root, out, model, max_attempts=1, on_progress=kill_first)
    assert killed and first.failed_now == 1 and first.done_now == 7
    rows = {row["study"]: row for row in read_csv(out / "studies.csv")}
    row = rows[printable(killed[0])]
    assert row["status"] == "failed"
    assert "died" in row["reason"] and row["report_folder"] == ""
    second = run_embedded(root, out, model)
    assert second.done_now == 1 and second.kept == 7
    assert report_csvs(out) == report_csvs(reference)


def test_a_dead_worker_is_replaced_and_its_unit_retried_in_the_same_run(
    archive, model: Path, tmp_path: Path
):
    root, reference, _, _ = archive
    out = tmp_path / "out"
    killed: list[str] = []

    def kill_first(state) -> None:
        event: Event | None = state.event
        if event is not None and event.kind == "progress" and not killed:
            killed.append(event.key)
            os.kill(int(event.worker.rsplit(":", 1)[1]), signal.SIGKILL)

    result = run_embedded(root, out, model, on_progress=kill_first)
    assert killed and result.retried_workers == 1 and result.done_now == 8
    assert read_archive(out).studies[0].attempts >= 1
    attempts = {s.key: s.attempts for s in read_archive(out).studies}
    assert attempts[killed[0]] == 2
    assert report_csvs(out) == report_csvs(reference)


def test_ctrl_c_leaves_nothing_half_done_marked_done(model: Path, tmp_path: Path):
    root, out = tmp_path / "root", tmp_path / "out"
    for n in range(6):
        write_series(root / f"case{n}", "CT_small.dcm", 12, seed=10 + n)
    command = [sys.executable, "-m", "btd_core.cli", "archive", str(root), "--model", str(model)]
    command += ["--out", str(out), "--provider", "cpu", "--jobs", "1", "--overlays", "2"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    manifest = out / "manifest.sqlite"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # stop once a unit is done and the next one running
        if manifest.is_file():
            try:
                db = sqlite3.connect(f"file:{manifest}?mode=ro", uri=True)
                states = [r[0] for r in db.execute("SELECT state FROM units")]
                db.close()
            except sqlite3.Error:
                states = []
            if "done" in states and "running" in states:
                break
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    output = process.communicate(timeout=120)[0].decode()
    assert process.returncode == 130, output
    index = read_archive(out)
    done = [s for s in index.studies if s.report_dir is not None]
    assert 1 <= len(done) < 6
    assert {s.status for s in index.studies} <= {"scored", "pending"}
    assert not list((out / "studies").glob(".*"))
    for study in index.studies:  # a report folder exists exactly for the units done
        folder = (
            out
            / "studies"
            / next(
                r
                for r in sqlite3.connect(out / "manifest.sqlite").execute(
                    "SELECT folder FROM units WHERE key = ?", (study.key,)
                )
            )[0]
        )
        assert folder.is_dir() == (study.status == "scored")
    rows = read_csv(out / "studies.csv")
    assert len(rows) == 6
    rerun = subprocess.run(command, capture_output=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout.decode()
    text = rerun.stdout.decode()
    assert f"{len(done)} kept from earlier runs" in text
    assert f"{6 - len(done)} scanned" in text


def test_the_cli_runs_an_archive_and_prints_plain_progress(model: Path, tmp_path: Path, capsys):
    root = tmp_path / "root"
    write_series(root / "one", "CT_small.dcm", 2, seed=20)
    write_series(root / "two", "CT_small.dcm", 2, seed=21)
    out = tmp_path / "out"
    argv = ["archive", str(root), "--model", str(model), "--out", str(out), "--jobs", "1"]
    assert main([*argv, "--provider", "cpu", "--no-phi"]) == 0
    text = capsys.readouterr().out
    assert "2 studies found, 0 done before, 2 to scan" in text
    assert "archive: 2/2 units" in text and "slices/s" in text
    assert "patient_name" not in (out / "studies.csv").read_text()
    assert main([*argv, "--provider", "cpu", "--no-phi"]) == 0
    assert "0 scanned, 2 kept from earlier runs" in capsys.readouterr().out
    assert main([*argv, "--provider", "cpu"]) == 2  # PHI wanted now: another archive
    assert "include_phi" in capsys.readouterr().out


def test_calibrated_mode_options_are_part_of_the_archive(model: Path, tmp_path: Path):
    config = config_for(model, score=ScoreRequest(mode="calibrated"))
    with pytest.raises(ScoreModeError, match="calibrat"):
        run_archive(tmp_path, tmp_path.parent / "x-out", config, lambda c: LocalExecutor(c, 1))


def test_a_recalibration_is_never_resumed_into_reports_of_the_old_one(
    model: Path, tmp_path: Path, capsys
):
    own = tmp_path / "model" / model.name  # its calibration sidecar lies beside it
    own.parent.mkdir()
    shutil.copy(model, own)
    root, out = tmp_path / "root", tmp_path / "out"
    for n in range(2):  # a planted block each: surprises above 0, which a calibration sets
        box = (40, 40, 32)
        write_series(root / f"case{n}", "CT_small.dcm", 2, planted_index=1, planted_box=box, seed=n)
    write_series(tmp_path / "genuine1", "CT_small.dcm", 3, seed=40)
    (tmp_path / "genuine2").mkdir()  # other genuine tissue: shifted crops, as .npy slices
    for i, hu in enumerate(real_hu_slices(6, size=100)):
        np.save(tmp_path / "genuine2" / f"slice{i:02d}.npy", hu)
    calibrate = ["--model", str(own), "--provider", "cpu", "--stride", "16"]
    assert main(["calibrate", str(tmp_path / "genuine1"), *calibrate]) == 0
    argv = ["archive", str(root), "--model", str(own), "--out", str(out), "--jobs", "1"]
    argv += ["--provider", "cpu", "--workers", "1"]
    assert main(argv) == 0
    first = report_csvs(out)
    modes = {row["score_mode"] for s in read_archive(out).studies for row in findings_of(s)}
    assert modes == {"calibrated"}
    old = sidecar_path(own).read_bytes()
    assert main(["calibrate", str(tmp_path / "genuine2"), *calibrate]) == 0  # same file, new data
    assert sidecar_path(own).read_bytes() != old
    capsys.readouterr()
    assert main(argv) == 2  # refused before any work: nothing rescanned, nothing mixed
    said = " ".join(capsys.readouterr().out.split())
    assert "calibration_sha256" in said and "choose a new --out" in said
    assert report_csvs(out) == first
    elsewhere = [str(tmp_path / "out2") if arg == str(out) else arg for arg in argv]
    assert main(elsewhere) == 0  # a new OUT: every study scanned with the new calibration
    new = report_csvs(tmp_path / "out2")
    assert new.keys() == first.keys() and new != first  # the new calibration scores otherwise
    sidecar_path(own).write_bytes(old)  # the calibration the archive was made with: resumed
    capsys.readouterr()
    assert main(argv) == 0
    assert "0 scanned, 2 kept from earlier runs" in capsys.readouterr().out


def test_a_worker_refuses_files_other_than_those_the_run_began_with(model: Path):
    from btd_core.archive.unit_scan import ContentChanged, UnitScanner

    began = replace(config_for(model), model_sha256=hashlib.sha256(model.read_bytes()).hexdigest())
    assert UnitScanner(replace(began, calibration_sha256="none")).slice_score.mode == "local"
    with pytest.raises(ContentChanged, match="the calibration file changed"):
        UnitScanner(replace(began, calibration_sha256="0" * 64))
    with pytest.raises(ContentChanged, match="the model file changed"):
        UnitScanner(replace(began, model_sha256="0" * 64))


def findings_of(study) -> list[dict[str, str]]:
    """The rows of a study's findings.csv in an archive."""
    return read_csv(study.report_dir / "findings.csv")


def test_another_btd_version_is_never_resumed_into_reports_of_this_one(
    archive, model: Path, monkeypatch
):
    root, out, _, _ = archive
    monkeypatch.setattr(driver, "btd_version", lambda: "99.0+other")
    with pytest.raises(ManifestError, match=r"btd_version: '.+' there, '99\.0\+other' now"):
        run_embedded(root, out, model)


def test_a_changed_setting_is_named_field_by_field_and_an_older_archive_is_said_so():
    settings = {"outputs": {"include_phi": True, "dicom_top": None}, "study_depth": 1}
    stored = {"model_sha256": "a", "report_settings": json.dumps(settings)}
    settings["outputs"]["include_phi"] = False  # type: ignore[index]
    now = {"model_sha256": "a", "btd_version": "2", "report_settings": json.dumps(settings)}
    assert identity_differences(stored, now) == [
        "btd_version: not recorded there (made by an older btd), '2' now",
        "report_settings.outputs.include_phi: True there, False now",
    ]
    assert identity_differences(now, now) == []


def test_ray_is_optional_and_said_so_when_missing(model: Path, tmp_path: Path, monkeypatch, capsys):
    code = (
        "import sys, btd_core.cli.main, btd_core.archive.driver, btd_core.archive.local, "
        "btd_core.archive.index; assert 'ray' not in sys.modules, 'ray imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the archive extra were not there
    root = tmp_path / "root"
    write_series(root / "one", "CT_small.dcm", 2, seed=22)
    argv = ["archive", str(root), "--model", str(model), "--out", str(tmp_path / "out")]
    assert main([*argv, "--ray", "local"]) == 2
    assert "pip install 'btd[archive]'" in " ".join(capsys.readouterr().out.split())
    assert (tmp_path / "out" / "manifest.sqlite").is_file()  # resumable without Ray


def test_a_second_run_into_the_same_out_is_refused_while_one_runs(model: Path, tmp_path: Path):
    import fcntl

    root, out = tmp_path / "root", tmp_path / "out"
    write_series(root / "one", "CT_small.dcm", 2, seed=23)
    out.mkdir()
    with open(out / ".lock", "a+") as held:  # what a running btd archive holds
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(ArchiveError, match="another btd archive is running"):
            run_embedded(root, out, model)
    assert run_embedded(root, out, model).done_now == 1  # once it ended: runs
