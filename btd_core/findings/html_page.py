"""One self-contained HTML page from a template: what ``report.html`` and ``index.html`` share.

A page is meant to be opened by anyone on the case (a manager, counsel, a radiologist) in
any browser, offline, with nothing but the file: its CSS is inline, its images are
``data:`` URIs, and it holds no script at all.  Its Content-Security-Policy
(:data:`CONTENT_SECURITY_POLICY`) tells a browser to refuse any fetch the page might
still name, so opening it reaches no network.

Templates (``btd_core/findings/templates/*.html.j2``, shipped as package data) are Jinja2
with autoescaping always on: text from files and DICOM tags is data, shown literally
(``<script>`` in a file name reads as ``<script>``).  Callers also pass such text through
:func:`btd_core.safe_text.printable` (the ``printable`` filter), so control characters and
bidirectional overrides show as visible escapes, as they do in the CSV files.
"""

from __future__ import annotations

import base64
import io
from functools import cache
from pathlib import Path

import jinja2
from PIL import Image

from btd_core.atomic import atomic_write_bytes
from btd_core.findings.score_text import score_text
from btd_core.hashing import bytes_sha256
from btd_core.safe_text import printable

CONTENT_SECURITY_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
"""Nothing may be fetched: images only from ``data:`` URIs, styles only inline."""


@cache
def environment() -> jinja2.Environment:
    """The templates' environment: autoescape on for every template, undefined names an
    error, filters ``score`` (:func:`score_text`) and ``printable``."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("btd_core.findings", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["score"] = score_text
    env.filters["printable"] = printable
    env.globals["csp"] = CONTENT_SECURITY_POLICY
    return env


def render_page(template: str, **context: object) -> str:
    """The page ``template`` (a file name in ``templates/``) rendered with ``context``."""
    return environment().get_template(template).render(**context)


def png_data_uri(picture: Image.Image) -> str:
    """``picture`` as a ``data:image/png;base64,...`` URI (PNG, compression level 9)."""
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", compress_level=9)
    return png_bytes_uri(buffer.getvalue())


def png_bytes_uri(data: bytes) -> str:
    """PNG file bytes as a ``data:`` URI."""
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def write_page(path: Path, html: str) -> str:
    """Write ``html`` (UTF-8) atomically to ``path``; returns its SHA-256."""
    data = html.encode("utf-8", errors="backslashreplace")
    atomic_write_bytes(Path(path), data)
    return bytes_sha256(data)
