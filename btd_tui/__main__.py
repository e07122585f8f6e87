"""``python -m btd_tui STUDY_DIR --model MODEL.onnx ...``: the same as ``btd audit``."""

from __future__ import annotations

import sys

from btd_core.cli import main

if __name__ == "__main__":
    sys.exit(main(["audit", *sys.argv[1:]]))
