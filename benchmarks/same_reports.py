"""Do two versions of btd write the same reports?  Byte for byte, in every score mode.

A refactoring must not change what an examiner files.  This builds one fixed study
(real lung1 chest CT slices as a DICOM series with planted edits, a ``.npy`` volume of
other lung1 slices, a junk file) and a deterministic torch-free scorer
(``tests/onnx_scorer.py``), then runs ``btd calibrate`` on other, genuine lung1 slices and
``btd scan`` in each score mode (auto with and without a calibration, calibrated with and
without series context, local, tile) once with the working tree and once with a git revision
(checked out into a temporary worktree, run with the same Python), and compares
``findings.csv``, ``series.csv``, ``files.csv`` and the calibration JSON byte for byte.

    python benchmarks/fetch_lung1.py               # once: lung1 into ~/.cache/btd/pyradiomics
    python benchmarks/same_reports.py --against 157216b

Prints one line per file and mode (``same`` or ``DIFFERENT`` with the first differing
line) and exits 0 only when every file is identical.
"""

from __future__ import annotations

import argparse
import difflib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LUNG1 = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "btd/pyradiomics"
COMPARED = ("findings.csv", "series.csv", "files.csv")
CALIBRATION = "calibration.json"
RUNS: dict[str, list[str]] = {
    "auto": ["--score", "auto", "--calibration", CALIBRATION],
    "calibrated": ["--score", "calibrated", "--calibration", CALIBRATION],
    "calibrated-no-context": [
        "--score",
        "calibrated",
        "--no-context",
        "--calibration",
        CALIBRATION,
    ],
    "local": ["--score", "local"],
    "tile": ["--score", "tile"],
    "auto-uncalibrated": ["--score", "auto"],
}
"""Each scan's flags; ``calibration.json`` stands for the calibration the run made."""


def _lung1() -> np.ndarray:
    """lung1 in HU, [48, 512, 512] float32 (slice, row, column)."""
    import nrrd

    volume, _ = nrrd.read(str(LUNG1 / "lung1_image.nrrd"))
    return np.ascontiguousarray(volume.transpose(2, 1, 0), dtype=np.float32)


def _plant(slices: np.ndarray) -> np.ndarray:
    """Copy-move edits in the lungs: a tissue block pasted (injection), lung pasted over a
    vessel region (removal), and a uniform-noise block (synthetic texture); HU."""
    edited = slices.copy()
    edited[3, 200:230, 130:160] = slices[3, 300:330, 250:280]
    edited[5, 230:250, 360:380] = slices[5, 180:200, 390:410]
    rng = np.random.default_rng(7)
    edited[6, 260:290, 150:180] = rng.uniform(-700, 1500, (30, 30))
    return edited


def _write_dicom_series(folder: Path, hu: np.ndarray) -> None:
    """Write [N, 512, 512] HU as a CT series, 5 mm apart, on pydicom-data's 693_UNCI.dcm."""
    from tests.study_builder import write_hu_series

    write_hu_series(
        folder,
        hu,
        study_uid="1.2.826.0.1.3680043.8.498.1",
        series_uid="1.2.826.0.1.3680043.8.498.2",
        sop_uid=lambda index: f"1.2.826.0.1.3680043.8.498.3.{index + 1}",
        file_name=lambda index: f"IM{(index * 37) % 100:04d}",
    )


def build_fixture(into: Path) -> tuple[Path, Path, Path]:
    """The study, the genuine folder for calibration and the scorer; returns their paths."""
    sys.path.insert(0, str(ROOT))
    from tests.onnx_scorer import build_scorer

    volume = _lung1()
    study = into / "study"
    _write_dicom_series(study / "chest", _plant(volume[14:24]))
    np.save(study / "volume.npy", volume[30:38])
    (study / "junk.dcm").write_bytes(b"DICM but not really" + bytes(range(256)) * 4)
    genuine = into / "genuine"
    genuine.mkdir()
    np.save(genuine / "genuine.npy", volume[0:12])
    model = build_scorer(into / "ct.onnx", modality="ct")
    return study, genuine, model


def run_tree(tree: Path, fixture: tuple[Path, Path, Path], out: Path) -> None:
    """Calibrate and scan in every mode with the code of ``tree``; outputs under ``out``."""
    study, genuine, model = fixture
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONHASHSEED": "0"}
    out.mkdir(parents=True)

    def btd(*args: str) -> None:
        command = [sys.executable, "-c", "from btd_core.cli.main import main; main()", *args]
        done = subprocess.run(command, env=env, cwd=tree, capture_output=True, text=True)
        if done.returncode not in (0, 1):
            raise SystemExit(f"{tree}: btd {' '.join(args)} failed:\n{done.stderr[-3000:]}")

    btd("calibrate", str(genuine), "--model", str(model), "--out", str(out / CALIBRATION))
    for name, flags in RUNS.items():
        flags = [str(out / CALIBRATION) if flag == CALIBRATION else flag for flag in flags]
        btd("scan", str(study), "--model", str(model), "--out", str(out / name), *flags)


def compare(a: Path, b: Path) -> bool:
    """Print one line per compared file; True when all are byte-identical."""
    pairs = [(CALIBRATION, "calibration")]
    pairs += [(f"{mode}/{name}", mode) for mode in RUNS for name in COMPARED]
    same = True
    for relative, _ in pairs:
        left, right = a / relative, b / relative
        if not left.is_file() or not right.is_file():
            print(f"MISSING    {relative}: {left.is_file()=} {right.is_file()=}")
            same = False
            continue
        if left.read_bytes() == right.read_bytes():
            print(f"same       {relative} ({left.stat().st_size} bytes)")
            continue
        same = False
        diff = difflib.unified_diff(
            right.read_text().splitlines(), left.read_text().splitlines(), lineterm="", n=0
        )
        print(f"DIFFERENT  {relative}:")
        for line in list(diff)[2:8]:
            print(f"    {line[:200]}")
    return same


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", required=True, help="git revision to compare with")
    parser.add_argument("--keep", type=Path, help="keep the fixture and outputs here")
    args = parser.parse_args()
    if not (LUNG1 / "lung1_image.nrrd").is_file():
        print("lung1 is not fetched: python benchmarks/fetch_lung1.py", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="btd-same-")) if args.keep is None else args.keep
    work.mkdir(parents=True, exist_ok=True)
    other = work / "other-tree"
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(other), args.against],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    try:
        fixture = build_fixture(work / "fixture")
        run_tree(ROOT, fixture, work / "this")
        run_tree(other, fixture, work / "against")
        same = compare(work / "this", work / "against")
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(other)], cwd=ROOT)
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print("IDENTICAL" if same else "REPORTS DIFFER", f"(working tree vs {args.against})")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
