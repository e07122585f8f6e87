"""``btd archive`` on a synthetic archive: embedded vs Ray, per-unit overhead, memory, resume.

The archive is ``--studies`` folder-per-study DICOM studies of ``--slices`` slices each,
built from real CT: pyradiomics' lung1 chest CT (``~/.cache/btd/pyradiomics``, fetched by
``benchmarks/fetch_lung1.py``; pydicom's CT_small.dcm when it is missing), each slice
downsampled to ``--size`` px (default 96, so the whole benchmark runs in minutes on two
CPU cores) and written into a copy of a real CT DICOM header with new UIDs and positions.
The scorer is the torch-free ONNX high-pass of ``tests/onnx_scorer.py`` (32 px patches):
a real onnxruntime session, far cheaper than the method's U-Net, so the figures show the
archive's own costs (discovery, processes, manifest, reports), not the model's.

Every configuration runs the real ``btd archive`` command in its own process; peak memory
is the highest sum of resident set sizes of that process and its children (the worker
processes), sampled every 0.1 s (for Ray, its local runtime's processes too).

    python benchmarks/bench_archive.py                    # 200 studies x 20 slices
    python benchmarks/bench_archive.py --studies 1000     # a bigger archive
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.onnx_scorer import build_scorer
from tests.study_builder import read_source

BTD = [sys.executable, "-m", "btd_core.cli.main"]
LUNG1 = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "btd" / "pyradiomics"


def real_slices(size: int) -> tuple[np.ndarray, str]:
    """Real CT slices in HU, downsampled to ``size`` px: lung1's 48, else CT_small's one."""
    image = LUNG1 / "lung1_image.nrrd"
    try:
        import nrrd

        volume, _ = nrrd.read(str(image))
        volume = np.ascontiguousarray(volume.transpose(2, 1, 0), dtype=np.float32)
        source = f"lung1 ({volume.shape[0]} slices of {volume.shape[1]} px)"
    except (ImportError, OSError):
        dataset = read_source("CT_small.dcm")
        hu = dataset.pixel_array * float(dataset.RescaleSlope) + float(dataset.RescaleIntercept)
        volume = np.stack([np.roll(hu, shift, axis=1) for shift in range(0, 48, 4)])
        source = "pydicom CT_small.dcm (lung1 not fetched)"
    step = volume.shape[1] // size
    small = volume[:, : step * size, : step * size]
    small = small.reshape(volume.shape[0], size, step, size, step).mean(axis=(2, 4))
    return small.astype(np.float32), source


def build_archive(root: Path, studies: int, slices: int, size: int) -> str:
    """Write the synthetic archive; returns where its pixels came from."""
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    volume, source = real_slices(size)
    template = read_source("CT_small.dcm")
    template.Rows = template.Columns = size
    template.RescaleSlope, template.RescaleIntercept = 1, -1024
    template.BitsAllocated, template.BitsStored, template.HighBit = 16, 16, 15
    template.PixelRepresentation = 0
    template.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    for n in range(studies):
        folder = root / f"study{n:05d}"
        folder.mkdir(parents=True)
        study_uid, series_uid = generate_uid(), generate_uid()
        start = n % max(1, volume.shape[0] - slices)
        for i in range(slices):
            dataset = copy.deepcopy(template)
            dataset.StudyInstanceUID, dataset.SeriesInstanceUID = study_uid, series_uid
            dataset.SOPInstanceUID = generate_uid()
            dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
            dataset.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
            dataset.ImagePositionPatient = [0.0, 0.0, 2.5 * i]
            dataset.InstanceNumber = i + 1
            hu = volume[(start + i) % volume.shape[0]]
            dataset.PixelData = np.clip(hu + 1024, 0, 65535).astype(np.uint16).tobytes()
            dataset.save_as(folder / f"IM{i:04d}.dcm", enforce_file_format=True)
    return source


def tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants (from /proc)."""
    import psutil

    try:
        process = psutil.Process(pid)
        family = [process, *process.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for member in family:
        try:
            total += member.memory_info().rss
        except psutil.Error:
            continue
    return total


def run_cli(argv: list[str], stop_at: float | None = None, manifest: Path | None = None) -> dict:
    """Run ``btd archive argv`` in its own process: wall time, peak tree RSS, output; with
    ``stop_at``, SIGINT once that share of the units is done (read from ``manifest``)."""
    started = time.monotonic()
    process = subprocess.Popen(
        [*BTD, "archive", *argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    peak = [0]
    done_at_stop = [None]

    def sample() -> None:
        while process.poll() is None:
            peak[0] = max(peak[0], tree_rss(process.pid))
            if stop_at is not None and done_at_stop[0] is None and manifest and manifest.is_file():
                try:
                    db = sqlite3.connect(f"file:{manifest}?mode=ro", uri=True)
                    states = [r[0] for r in db.execute("SELECT state FROM units")]
                    db.close()
                except sqlite3.Error:
                    states = []
                if states and states.count("done") >= stop_at * len(states):
                    done_at_stop[0] = states.count("done")
                    process.send_signal(signal.SIGINT)
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output = process.communicate()[0].decode(errors="replace")
    sampler.join()
    return {
        "wall_s": time.monotonic() - started,
        "peak_mb": peak[0] / 2**20,
        "rc": process.returncode,
        "output": output,
        "done_at_stop": done_at_stop[0],
    }


def this_run(out: Path) -> dict:
    return json.loads((out / "archive.json").read_text())["this_run"]


def in_process_baseline(root: Path, model: Path, studies: list[str]) -> float:
    """Seconds to scan ``studies`` one after another with one scorer, no archive around it
    (what each unit costs without processes, manifest or report transfer)."""
    from btd_core.archive.unit_scan import UnitScanner, UnitTask, WorkerConfig
    from btd_core.audit.scan_config import ScanConfig
    from btd_core.engine.options import EngineOptions
    from btd_core.scoring.tiles import ScanSettings

    scan = ScanConfig(
        provider="cpu", engine=EngineOptions(threads=1), settings=ScanSettings(workers=1)
    )
    config = WorkerConfig(model=str(model), scan=scan)
    scanner = UnitScanner(config)
    started = time.monotonic()
    for name in studies:
        outcome = scanner.scan(UnitTask(f"folder:{name}", str(root / name), None))
        assert outcome.status == "done", outcome.reason
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=200)
    parser.add_argument("--slices", type=int, default=20)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-archive-"))
    work.mkdir(parents=True, exist_ok=True)
    model = build_scorer(work / "ct32.onnx", patch_size=32)
    small_n = max(1, args.studies // 4)
    big, small = work / f"root{args.studies}", work / f"root{small_n}"
    source = build_archive(big, args.studies, args.slices, args.size)
    small.mkdir()
    for name in sorted(os.listdir(big))[:small_n]:
        shutil.copytree(big / name, small / name)
    slices = args.studies * args.slices
    common = ["--model", str(model), "--provider", "cpu", "--jobs", str(args.jobs)]
    print(f"archive: {args.studies} studies x {args.slices} slices = {slices} slices")
    print(f"slices: {source}, downsampled to {args.size} x {args.size} px, in DICOM files")
    print("scorer: tests/onnx_scorer.py high-pass, 32 px patches (onnxruntime, CPU): the")
    print("  figures are the archive's own costs; a real U-Net adds its scoring time per slice")
    print(f"machine: {os.cpu_count()} CPU cores, no GPU; {args.jobs} workers\n")

    runs = {}
    for label, root, extra in (
        (f"embedded, {small_n} studies", small, []),
        (f"embedded, {args.studies} studies", big, []),
        (f"ray local, {args.studies} studies", big, ["--ray", "local"]),
    ):
        out = work / f"out-{len(runs)}"
        result = run_cli([str(root), "--out", str(out), *common, *extra])
        assert result["rc"] in (0, 1), result["output"]  # 1: a study without a scorable slice
        record = this_run(out)
        result["scanned"], result["slices"] = record["scanned"], record["slices_scored"]
        result["start_s"], result["scan_s"] = record["workers_start_s"], record["scanning_s"]
        runs[label] = result
    statuses = json.loads((work / "out-1" / "archive.json").read_text())["counts"]["by_status"]
    print("studies:", ", ".join(f"{n} {status}" for status, n in statuses.items() if n))
    print(
        f"{'run':30} {'wall s':>7} {'slices/s':>9} {'start s':>8} {'scan s':>7} "
        f"{'scan slices/s':>14} {'units':>6} {'peak RSS MB':>12}"
    )
    for label, result in runs.items():
        rate = result["slices"] / result["wall_s"]
        scan_rate = result["slices"] / result["scan_s"] if result["scan_s"] else 0.0
        print(
            f"{label:30} {result['wall_s']:7.1f} {rate:9.1f} {result['start_s']:8.1f} "
            f"{result['scan_s']:7.1f} {scan_rate:14.1f} {result['scanned']:6d} "
            f"{result['peak_mb']:12.0f}"
        )
    print("(wall: the whole command; start: workers up and models open; scan: units only)")
    embedded_small, embedded_big, _ = runs.values()
    print(
        f"\npeak memory, driver + workers: {embedded_small['peak_mb']:.0f} MB at {small_n} "
        f"studies, {embedded_big['peak_mb']:.0f} MB at {args.studies} "
        f"(x{embedded_big['peak_mb'] / embedded_small['peak_mb']:.2f} for x"
        f"{args.studies / small_n:.0f} the studies); Ray's figure includes its own runtime "
        "(raylet, GCS, ...)"
    )

    studies = sorted(os.listdir(small))
    inproc = in_process_baseline(small, model, studies)
    out = work / "out-one-worker"
    one_worker = ["--model", str(model), "--provider", "cpu", "--jobs", "1"]
    one = run_cli([str(small), "--out", str(out), *one_worker])
    assert one["rc"] in (0, 1), one["output"]
    scan_s = this_run(out)["scanning_s"]
    overhead = (scan_s - inproc) / len(studies)
    print(
        f"\nper-unit overhead ({len(studies)} studies, 1 worker): btd archive scanned them in "
        f"{scan_s:.2f} s (after {this_run(out)['workers_start_s']:.1f} s to start the worker; "
        f"{one['wall_s']:.1f} s in all), the same scans in one process with one scorer and no "
        f"archive around them took {inproc:.2f} s: {overhead * 1000:.1f} ms per unit (manifest "
        "transactions, report sent back and committed, progress)"
    )

    out = work / "out-resume"
    first = run_cli(
        [str(big), "--out", str(out), *common], stop_at=0.5, manifest=out / "manifest.sqlite"
    )
    assert first["rc"] in (0, 1, 130), first["output"]  # 130: stopped (0/1: it had finished)
    db = sqlite3.connect(out / "manifest.sqlite")
    done = db.execute("SELECT COUNT(*) FROM units WHERE state = 'done'").fetchone()[0]
    db.close()
    second = run_cli([str(big), "--out", str(out), *common])
    assert second["rc"] in (0, 1), second["output"]
    record = this_run(out)
    redone = record["scanned"] - (args.studies - done)
    print(
        f"\nresume: Ctrl-C at {first['done_at_stop']}/{args.studies} units done "
        f"({first['wall_s']:.1f} s, exit {first['rc']}); {done} done in the manifest after "
        f"the stop. Rerun: {second['wall_s']:.1f} s, {record['kept_from_earlier_runs']} kept, "
        f"{record['scanned']} scanned, units redone = {redone}"
    )
    full = embedded_big["wall_s"]
    print(f"  (interrupted + resumed {first['wall_s'] + second['wall_s']:.1f} s vs {full:.1f} s)")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
