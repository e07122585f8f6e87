"""Progress where nobody watches a terminal (issue 15): a log file or a batch job's output
gets a plain line at least every 10 s and one at the end; a terminal keeps rich's bar.

The commands are run for real (``btd_core.cli.main.main``) on small DICOM studies with
the torch-free ``ct_onnx`` scorer; pytest's captured stdout is not a terminal.  The 10 s
are made short by setting :data:`btd_core.cli.progress.PLAIN_EVERY_S`, and the wording
and the throttling are checked with an injected clock.
"""

from __future__ import annotations

import io
import re
import time
from pathlib import Path

import pytest
from rich.console import Console
from rich.progress import Progress

from btd_core.cli import progress
from btd_core.cli.main import main as btd_main
from btd_core.cli.progress import PlainProgress, duration, progress_display
from btd_core.exit_status import ExitStatus
from tests.study_builder import write_series

LINE = r"{label}: (\d+)/{total} {unit}, [\d.e+]+ {unit}/s, about (\d+ min )?\d+ s left"
END = r"{label}: {total}/{total} {unit}, [\d.e+]+ {unit}/s, done in (\d+ min )?\d+ s"


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def plain_console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=200, force_terminal=False), out


def test_plain_lines_say_phase_count_rate_and_time_left_every_10_s() -> None:
    console, out = plain_console()
    clock = FakeClock()
    with PlainProgress(console, "scoring", clock=clock, tick=False) as shown:
        assert shown.every == 10.0
        clock.now = 2.5  # finding files: the rate counts from the first slice
        shown.update(0, 480)
        for step in range(1, 8):  # 16 slices every 5 s; a line is due every other one
            clock.now = 2.5 + 5 * step
            shown.update(16 * step, 480)
        assert out.getvalue().splitlines() == [
            "scoring: 32/480 slices, 3.2 slices/s, about 2 min 20 s left",
            "scoring: 64/480 slices, 3.2 slices/s, about 2 min 10 s left",
            "scoring: 96/480 slices, 3.2 slices/s, about 2 min 0 s left",
        ]
        clock.now = 40.0
        shown.update(120, 480, "2 failed")
        clock.now = 42.5
        shown.update(128, 480, "2 failed")
        assert out.getvalue().splitlines()[-1] == (
            "scoring: 128/480 slices, 3.2 slices/s, about 1 min 50 s left, 2 failed"
        )
        clock.now = 152.5
        shown.update(480, 480, "2 failed")
    assert out.getvalue().splitlines()[-2:] == [
        "scoring: 480/480 slices, 3.2 slices/s, about 0 s left, 2 failed",
        "scoring: 480/480 slices, 3.2 slices/s, done in 2 min 32 s, 2 failed",
    ]


def test_a_silent_phase_still_gets_a_line_from_the_timer() -> None:
    console, out = plain_console()
    with PlainProgress(console, "calibrating", every=0.1):
        time.sleep(0.45)  # no update at all: files are still being found
    lines = out.getvalue().splitlines()
    assert len(lines) >= 3 and lines[0] == "calibrating: 0 slices, starting"
    assert lines[-1] == "calibrating: 0 slices, done in 0 s"


def test_durations_read_as_people_say_them() -> None:
    assert [duration(s) for s in (0, 44.6, 112.5, 3600 + 5 * 60 + 9)] == [
        "0 s",
        "45 s",
        "1 min 52 s",
        "1 h 5 min",
    ]


def test_a_terminal_keeps_richs_live_bar() -> None:
    console = Console(file=io.StringIO(), force_terminal=True)
    display, _ = progress_display(console, "scoring")
    assert isinstance(display, Progress)
    display, _ = progress_display(Console(file=io.StringIO(), force_terminal=False), "scoring")
    assert isinstance(display, PlainProgress)


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("progress") / "study"
    write_series(root / "ct", "CT_small.dcm", 4, seed=5)
    return root


def plain_lines(text: str, label: str, total: int, unit: str = "slices") -> list[str]:
    lines = [line for line in text.splitlines() if line.startswith(f"{label}:")]
    assert lines, text
    middle = re.compile(LINE.format(label=label, total=total, unit=unit))
    end = re.compile(END.format(label=label, total=total, unit=unit))
    assert end.fullmatch(lines[-1]), lines
    assert all(middle.fullmatch(line) for line in lines[:-1]), lines
    assert not any(line.startswith(label) and "━" in line for line in text.splitlines())
    return lines


def test_btd_scan_into_a_log_prints_plain_progress(study, ct_onnx, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(progress, "PLAIN_EVERY_S", 0.0)  # a line for every slice
    args = ["scan", str(study), "--model", str(ct_onnx), "--out", str(tmp_path / "report")]
    assert btd_main([*args, "--provider", "cpu", "--workers", "1"]) == ExitStatus.OK
    lines = plain_lines(capsys.readouterr().out, "scoring", 4)
    counts = [int(re.match(r"scoring: (\d+)", line)[1]) for line in lines[:-1]]
    assert counts == sorted(counts) and len(counts) >= 2 and counts[-1] == 4


def test_a_quick_scan_prints_just_the_last_line(study, ct_onnx, tmp_path, capsys):
    args = ["scan", str(study), "--model", str(ct_onnx), "--out", str(tmp_path / "report")]
    assert btd_main([*args, "--provider", "cpu"]) == ExitStatus.OK
    assert len(plain_lines(capsys.readouterr().out, "scoring", 4)) == 1  # well under 10 s


def test_btd_calibrate_into_a_log_prints_plain_progress(
    study, ct_onnx, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(progress, "PLAIN_EVERY_S", 0.0)
    args = ["calibrate", str(study), "--model", str(ct_onnx), "--out", str(tmp_path / "c.json")]
    assert btd_main([*args, "--provider", "cpu"]) == ExitStatus.OK
    assert len(plain_lines(capsys.readouterr().out, "calibrating", 4)) >= 2


def test_btd_eval_into_a_log_prints_plain_progress(study, ct_onnx, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(progress, "PLAIN_EVERY_S", 0.0)
    tampered = tmp_path / "tampered"
    write_series(tampered / "ct", "CT_small.dcm", 2, planted_index=0, planted_box=(20, 20, 30))
    args = ["eval", "--model", str(ct_onnx), "--out", str(tmp_path / "eval"), "--provider", "cpu"]
    code = btd_main([*args, "--genuine", str(study), "--tampered", str(tampered)])
    output = capsys.readouterr().out
    assert code == ExitStatus.OK, output
    assert len(plain_lines(output, "scoring", 6, unit="images")) >= 2


def test_no_done_line_when_the_work_fails() -> None:
    console, out = plain_console()
    try:
        with PlainProgress(console, "scoring", tick=False):
            raise RuntimeError("the model cannot be opened")
    except RuntimeError:
        pass
    assert "done in" not in out.getvalue()
