"""Fetch pyradiomics' lung1 chest CT (image + nodule label) once, checked by SHA-256.

The pyradiomics 3.1.0 source tarball (PyPI, BSD-3-Clause, Harvard Medical School)
carries ``data/lung1_image.nrrd`` and ``data/lung1_label.nrrd``.  Its wheels carry no
data and building it fails, but ``pip download --no-clean`` leaves the unpacked
source behind, from which the two files are copied.  ``lung2`` is never copied: it is
reserved for independent evaluation.

    python benchmarks/fetch_lung1.py            # into ~/.cache/btd/pyradiomics
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

FILES = {
    "lung1_image.nrrd": "379fa48bf34cfa961e6f5ec19c0c38757a30b9aa884212ef28dc29b5061c64ed",
    "lung1_label.nrrd": "e9d9a88054d7bc1d3034193ff907ce6b8c6ba28a7bc3a16f23728982d1b6b50a",
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> int:
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "btd/pyradiomics"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--to", type=Path, default=default)
    args = parser.parse_args()
    if all((args.to / n).is_file() and sha256(args.to / n) == h for n, h in FILES.items()):
        print(f"already there: {args.to}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "TMPDIR": tmp}
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-clean"]
        command += ["--no-binary", ":all:", "-d", str(Path(tmp) / "dl"), "pyradiomics==3.1.0"]
        subprocess.run(command, env=env, capture_output=True, check=False)  # fails after unpacking
        found = {p.name: p for p in Path(tmp).rglob("lung1_*.nrrd") if p.parent.name == "data"}
        args.to.mkdir(parents=True, exist_ok=True)
        for name, expected in FILES.items():
            if name not in found or sha256(found[name]) != expected:
                print(f"{name}: not found or wrong checksum in the pyradiomics 3.1.0 source")
                return 1
            shutil.copyfile(found[name], args.to / name)
    print(f"wrote {', '.join(FILES)} to {args.to}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
