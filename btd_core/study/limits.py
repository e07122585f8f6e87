"""What one study may claim before ``btd`` refuses it: limits checked from headers alone.

Every size a header claims (rows, columns, frames, bytes, array shapes, archive members) is
checked here with Python integers, which never overflow, before anything of that size is
allocated.  A refusal is a :class:`LimitExceeded` whose message starts with ``refused:`` and
names the command-line flag that raises the limit; discovery turns it into an error row.

The defaults bound the memory one slice can take on its way to the model: a frame has at
most :attr:`StudyLimits.max_pixels` pixels (16384 x 16384 = 268,435,456) and decodes to at
most :attr:`StudyLimits.max_frame_bytes` (two bytes per pixel: 512 MiB), its float32 copy
takes at most 1 GiB, and its tiles (see :mod:`btd_core.slices.tiling`) at most 16 bytes
per pixel at the default half-tile stride (4.3 GB at 16384 x 16384).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from btd_core.errors import BtdError

DEFAULT_MAX_SIDE_PIXELS = 16384
"""The default frame limit is this many pixels squared."""


class LimitExceeded(BtdError, ValueError):
    """A header claims more than the study limits allow; the message starts with ``refused:``."""


@dataclass(frozen=True)
class StudyLimits:
    """Limits on what the files of one study may claim (all checked from headers).

    Attributes
    ----------
    max_pixels:
        Pixels per frame (rows x columns), count; default 16384 x 16384.  Flag ``--max-pixels``.
    max_side:
        Pixels along one side of a frame; 65535 is the largest (0028,0010) Rows /
        (0028,0011) Columns DICOM can store.  Bounds the tiles of long thin images.
    max_frames:
        Frames per file: multi-frame DICOM, TIFF pages, the first axis of a 3-D ``.npy``.
        Flag ``--max-frames``.
    max_slices:
        Slices per study, all files together; files met after the study reached it are
        refused.  Flag ``--max-slices``.
    max_member_bytes:
        Bytes one member of a ``.zip`` study may hold uncompressed (it is read into
        memory), and bytes a deflated DICOM data set may inflate to.  Flag
        ``--max-member-mb`` (MiB).
    max_archive_members:
        Members one ``.zip`` may list.
    max_compression_ratio:
        Uncompressed over compressed size of one ``.zip`` member (zip bombs reach 1000).
    """

    max_pixels: int = DEFAULT_MAX_SIDE_PIXELS * DEFAULT_MAX_SIDE_PIXELS
    max_side: int = 65535
    max_frames: int = 10_000
    max_slices: int = 200_000
    max_member_bytes: int = 1 << 30
    max_archive_members: int = 100_000
    max_compression_ratio: int = 200

    def __post_init__(self) -> None:
        for name in (
            "max_pixels",
            "max_side",
            "max_frames",
            "max_slices",
            "max_member_bytes",
            "max_archive_members",
            "max_compression_ratio",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a whole number of at least 1, got {value!r}")

    # ----------------------------------------------------------------------- checks

    def pixels_label(self) -> str:
        """The pixel limit as people say it: ``16384 x 16384``, else ``N pixels``."""
        side = math.isqrt(self.max_pixels)
        if side * side == self.max_pixels:
            return f"{side} x {side}"
        return f"{self.max_pixels} pixels"

    def frame_problem(self, rows: int, columns: int) -> str | None:
        """Why a ``rows`` x ``columns`` frame (pixels) is refused, or ``None``."""
        if rows < 1 or columns < 1:
            return f"refused: a frame of {columns} x {rows} pixels is empty or negative"
        if rows > self.max_side or columns > self.max_side:
            return (
                f"refused: {columns} x {rows} pixels per frame: a side is over "
                f"{self.max_side} pixels"
            )
        if rows * columns > self.max_pixels:
            return (
                f"refused: {columns} x {rows} pixels per frame is over the limit of "
                f"{self.pixels_label()} (--max-pixels)"
            )
        return None

    @property
    def max_frame_bytes(self) -> int:
        """Bytes one frame may decode to: 16-bit samples at the pixel limit (512 MiB by
        default), so a colour or 32/64-bit frame at the largest size is refused before a
        decoder allocates it."""
        return self.max_pixels * 2

    def frame_bytes_problem(self, rows: int, columns: int, samples: int, bits: int) -> str | None:
        """Why a frame of ``samples`` samples of ``bits`` bits per pixel is refused for the
        bytes it decodes to (a 1-bit sample decodes to a byte), or ``None``."""
        decoded = rows * columns * samples * max(-(-bits // 8), 1)
        if decoded > self.max_frame_bytes:
            return (
                f"refused: {columns} x {rows} pixels x {samples} sample"
                f"{'s' if samples != 1 else ''} x {bits} bits per frame decode to {decoded} "
                f"bytes, over the limit of {self.max_frame_bytes} ({self.pixels_label()} "
                f"x 16 bits, --max-pixels)"
            )
        return None

    def frames_problem(self, frames: int) -> str | None:
        """Why ``frames`` frames in one file are refused, or ``None``."""
        if frames > self.max_frames:
            return (
                f"refused: {frames} frames in one file is over the limit of "
                f"{self.max_frames} (--max-frames)"
            )
        return None

    def check_frame(self, rows: int, columns: int, frames: int = 1) -> None:
        """Raise :class:`LimitExceeded` when the frame size or the frame count is refused."""
        problem = self.frame_problem(rows, columns) or self.frames_problem(frames)
        if problem:
            raise LimitExceeded(problem)

    def slices_problem(self, study_slices: int, file_slices: int) -> str | None:
        """Why a file of ``file_slices`` slices is refused when the study already has
        ``study_slices``, or ``None``."""
        if study_slices + file_slices > self.max_slices:
            slices = f"{file_slices} slice{'s' if file_slices != 1 else ''}"
            return (
                f"refused: its {slices} would take the study over the limit of "
                f"{self.max_slices} slices (--max-slices)"
            )
        return None

    def member_bytes_problem(self, size: int, what: str = "archive member") -> str | None:
        """Why an uncompressed ``size`` (bytes) of an archive member or inflated data set
        is refused, or ``None``."""
        if size > self.max_member_bytes:
            return (
                f"refused: the {what} holds {size} bytes uncompressed, over the limit of "
                f"{self.max_member_bytes // (1 << 20)} MiB (--max-member-mb)"
            )
        return None


DEFAULT_LIMITS = StudyLimits()


def parse_pixels(text: str) -> int:
    """``--max-pixels`` text as a pixel count: ``SIDE`` (SIDE x SIDE) or ``COLUMNSxROWS``.

    Raises ``ValueError`` with a plain message.
    """
    parts = text.lower().replace(" ", "").split("x")
    if len(parts) not in (1, 2) or not all(p.isdigit() for p in parts):
        raise ValueError(f"{text!r} is not SIDE or COLUMNSxROWS, e.g. 16384 or 20000x20000")
    numbers = [int(p) for p in parts]
    if min(numbers) < 1:
        raise ValueError(f"{text!r}: sides must be at least 1 pixel")
    return numbers[0] * numbers[0] if len(numbers) == 1 else numbers[0] * numbers[1]
