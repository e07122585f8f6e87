"""Output paths are checked before any work, and Ctrl-C ends a scan with a partial report.

Issue 14: an existing file as ``--out``, a folder that cannot be written, a non-empty
folder (an earlier report) and the study's own parent are each refused at once with
exit status 2; ``--overwrite`` replaces an earlier report; a study where nothing could be
scored exits 1; the first Ctrl-C stops ``btd scan`` within seconds, writes what was done
(marked cancelled) and exits 130.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from btd_core.cli.main import main as btd_main
from btd_core.exit_status import ExitStatus
from tests.study_builder import tree_fingerprint, write_series


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("outputs") / "study"
    write_series(root / "ct", "CT_small.dcm", 2, seed=3)
    return root


def scan(study: Path, model: Path, out: Path, *extra: str) -> int:
    args = ["scan", str(study), "--model", str(model), "--out", str(out), "--provider", "cpu"]
    return btd_main([*args, *extra])


def test_an_existing_file_as_out_is_refused_before_any_work(study, ct_onnx, tmp_path, capsys):
    taken = tmp_path / "report.csv"
    taken.write_text("keep me")
    bogus = tmp_path / "bogus.onnx"  # the model would fail too: the output is checked first
    bogus.write_text("x")
    assert scan(study, bogus, taken) == ExitStatus.CANNOT_RUN
    out = " ".join(capsys.readouterr().out.split())
    assert "is an existing file, not a folder" in out and "ONNX" not in out
    assert taken.read_text() == "keep me"


def test_a_folder_that_cannot_be_created_is_refused(study, ct_onnx, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert scan(study, ct_onnx, blocker / "report") == ExitStatus.CANNOT_RUN
    assert "cannot write into" in " ".join(capsys.readouterr().out.split())


def test_an_earlier_report_is_never_overwritten_silently(study, ct_onnx, tmp_path, capsys):
    out = tmp_path / "report"
    assert scan(study, ct_onnx, out) == ExitStatus.OK
    first = (out / "report.json").read_bytes()
    assert scan(study, ct_onnx, out) == ExitStatus.CANNOT_RUN
    assert "--overwrite" in " ".join(capsys.readouterr().out.split())
    assert (out / "report.json").read_bytes() == first
    assert scan(study, ct_onnx, out, "--overwrite") == ExitStatus.OK
    assert (out / "report.json").read_bytes() != first  # a new run: new times


def test_the_studys_parent_is_refused_and_the_evidence_untouched(study, ct_onnx, capsys):
    before = tree_fingerprint(study.parent)
    assert scan(study, ct_onnx, study.parent) == ExitStatus.CANNOT_RUN
    assert "is not empty" in " ".join(capsys.readouterr().out.split())
    assert tree_fingerprint(study.parent) == before


def test_a_study_where_nothing_is_scored_exits_1(ct_onnx, tmp_path, capsys):
    study = tmp_path / "study"
    study.mkdir()
    (study / "notes.txt").write_text("no slices here")
    assert scan(study, ct_onnx, tmp_path / "report") == ExitStatus.SOME_FAILED
    assert "no slice was scored" in capsys.readouterr().out


def test_ctrl_c_stops_the_scan_with_a_partial_report(ct_onnx, tmp_path, monkeypatch, capsys):
    """A real SIGINT to this process while ``btd scan`` scores (the scorer slowed down
    so that the scan is still running when it comes)."""
    from btd_core.engine.scorer import Scorer

    study = tmp_path / "study"
    write_series(study / "ct", "CT_small.dcm", 40, seed=4)
    real_score = Scorer.score

    def slow_score(self, patches, with_residuals=False):
        time.sleep(0.2)
        return real_score(self, patches, with_residuals=with_residuals)

    monkeypatch.setattr(Scorer, "score", slow_score)
    out = tmp_path / "report"
    sent: list[float] = []

    def interrupt() -> None:
        sent.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGINT)

    timer = threading.Timer(1.5, interrupt)  # start-up and discovery take well under 1 s
    timer.start()
    code = scan(study, ct_onnx, out, "--workers", "1", "--batch-size", "2")
    timer.join()
    stopped_in = time.monotonic() - sent[0]
    output = capsys.readouterr().out
    assert code == ExitStatus.CANCELLED, output
    assert "cancelled after" in output
    report = json.loads((out / "report.json").read_text())
    settings = report["settings"]
    assert settings["cancelled"] is True
    assert 0 <= settings["slices_done"] < settings["slices_total"] == 40
    assert stopped_in < 5, stopped_in


def test_tied_slices_rank_deterministically_and_every_top_overlay_is_written(ct_onnx, tmp_path):
    """Identical slices tie: ranked by series key, then slice index, and the scan keeps the
    views of exactly those top slices, so no overlay goes missing."""
    study = tmp_path / "study"
    for name in ("a", "b", "c"):
        write_series(study / name, "CT_small.dcm", 5, seed=7)  # same pixels everywhere
    reports = []
    for run in range(2):
        out = tmp_path / f"report{run}"
        assert scan(study, ct_onnx, out, "--workers", str(run + 1)) == ExitStatus.OK
        reports.append(out)
        overlays = sorted(p.name for p in (out / "overlays").iterdir())
        assert overlays == [f"rank{n:03d}.png" for n in range(1, 11)]
        settings = json.loads((out / "report.json").read_text())["settings"]
        assert settings["overlays_missing"] == []
    rows = [(r / "findings.csv").read_text().splitlines() for r in reports]
    keys = [[line.split(",")[6:10] for line in table[1:]] for table in rows]  # uids, frame, index
    assert keys[0] == keys[1]  # the same order whatever the threads
    ranked = [(row[0], int(row[3])) for row in keys[0]]  # (series uid, slice index)
    blocks = [uid for i, (uid, _) in enumerate(ranked) if i == 0 or ranked[i - 1][0] != uid]
    assert len(blocks) == 3  # all scores equal: one series after the other ...
    for uid in blocks:  # ... each in slice order
        assert [index for u, index in ranked if u == uid] == list(range(5))


def test_limit_flags_reach_discovery(study, ct_onnx, tmp_path, capsys):
    out = tmp_path / "report"
    assert scan(study, ct_onnx, out, "--max-pixels", "64") == ExitStatus.SOME_FAILED
    reasons = [line for line in (out / "files.csv").read_text().splitlines()[1:]]
    assert reasons and all("over the limit of 64 x 64 (--max-pixels)" in r for r in reasons)


def test_the_terminal_table_numbers_slices_from_1_like_the_app(study, ct_onnx, tmp_path, capsys):
    """People read "slice N of M" (1-based) everywhere; findings.csv keeps the 0-based
    ``slice_index`` for programs beside the 1-based ``slice_number``."""
    out = tmp_path / "report"
    assert scan(study, ct_onnx, out) == ExitStatus.OK
    printed = capsys.readouterr().out
    assert "slice N/M: the series' slice N of M, counted from 1" in " ".join(printed.split())
    with (out / "findings.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(int(r["slice_index"]) for r in rows) == [0, 1]
    assert all(int(r["slice_number"]) == int(r["slice_index"]) + 1 for r in rows)
    table = terminal_table(printed)
    shown = {cells["rank"]: cells["slice"] for cells in table}
    assert shown == {r["rank"]: f"{r['slice_number']}/2" for r in rows}, printed


def terminal_table(printed: str) -> list[dict[str, str]]:
    """The rows of btd scan's terminal table, by column name."""
    lines = [line for line in printed.splitlines() if line.startswith(("┃", "│"))]
    header = [cell.strip() for cell in lines[0].strip("┃").split("┃")]
    return [
        dict(zip(header, (cell.strip() for cell in line.strip("│").split("│")), strict=True))
        for line in lines[1:]
    ]


@pytest.mark.parametrize("columns", [80, 160])
def test_the_terminal_table_keeps_one_line_per_slice_at_any_width(
    ct_onnx, tmp_path, capsys, monkeypatch, columns
):
    """At 80 columns (long folder names) the position and region give way, the file name is
    cut in the middle (its end, which tells slices apart, kept); every row stays on one
    line; at 160 everything is shown whole."""
    root = tmp_path / "study"
    folder = root / "exported_from_the_hospital_pacs_on_the_first_of_december" / "chest"
    built = write_series(folder, "CT_small.dcm", 3, seed=4)
    monkeypatch.setenv("COLUMNS", str(columns))
    assert scan(root, ct_onnx, tmp_path / "report") == ExitStatus.OK
    printed = capsys.readouterr().out
    framed = [line for line in printed.splitlines() if line[:1] in "┏┃┡│└"]
    assert framed and all(len(line) <= columns for line in framed)
    table = terminal_table(printed)
    assert [row["rank"] for row in table] == ["1", "2", "3"]  # one line each
    names = {str(path.relative_to(root)) for path in built.files}
    for row in table:
        assert {"rank", "score", "series", "slice", "file"} <= set(row)
        if columns >= 160:
            assert row["file"] in names and "pos mm" in row and "where x,y size" in row
        else:
            assert row["file"].count("…") == 1
            head, tail = row["file"].split("…")
            (name,) = [n for n in names if n.startswith(head) and n.endswith(tail)]
            assert Path(name).name in tail  # the file's own name is kept whole
    assert ("pos mm" in table[0]) == ("where x,y size" in table[0]) == (columns >= 160)
