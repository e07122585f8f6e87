"""A real browser for the tests of ``report.html``: headless Chromium (Debian's ``chromium``
package, which ``.ci/run`` installs) driven by Playwright for Python.

Playwright's own browser downloads are never used (no ``playwright install``): it drives the
system's Chromium through ``executable_path``.  Where Playwright or Chromium is missing, or
Chromium cannot start here, the tests skip and say why.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def chromium_path() -> str | None:
    """The Chromium to drive: ``$BTD_CHROMIUM``, else the first of :data:`CHROMIUM_NAMES`
    on the PATH."""
    given = os.environ.get("BTD_CHROMIUM")
    if given:
        return given if Path(given).is_file() else None
    return next((found for name in CHROMIUM_NAMES if (found := shutil.which(name))), None)


@contextmanager
def headless_chromium() -> Iterator[Any]:
    """A launched headless Chromium (a Playwright ``Browser``), closed afterwards; skips the
    test when Playwright or Chromium is missing or Chromium cannot start."""
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="Playwright is not installed (pip install '.[test]')"
    )
    executable = chromium_path()
    if executable is None:
        pytest.skip("no Chromium to drive: apt-get install chromium (Debian), as .ci/run does")
    with sync_api.sync_playwright() as playwright:
        # Chromium refuses to run as root with its sandbox (CI containers run as root)
        args = ["--no-sandbox"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
        try:
            browser = playwright.chromium.launch(executable_path=executable, args=args)
        except sync_api.Error as err:
            pytest.skip(f"Chromium ({executable}) cannot start here: {str(err).splitlines()[0]}")
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Visit:
    """One page opened in the browser, and what happened while it was open: console
    messages ``(type, text)``, the URLs it requested, uncaught errors and dialogs."""

    page: Any
    console: list[tuple[str, str]] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def images(self) -> list[dict[str, Any]]:
        """Each ``<img>``: whether it loaded (``complete``) and its decoded size."""
        return self.page.evaluate(
            "() => Array.from(document.images, i =>"
            " ({complete: i.complete, width: i.naturalWidth, height: i.naturalHeight}))"
        )

    def rows(self, table: str) -> list[list[str]]:
        """The rendered text of each body row's cells of the table with id ``table``."""
        return self.page.evaluate(
            "(id) => Array.from(document.querySelectorAll(`#${id} tbody tr`),"
            " r => Array.from(r.cells, c => c.innerText))",
            table,
        )


def visit(browser: Any, path: Path) -> Visit:
    """Open ``path`` (a local file) in a new page and wait until it has loaded."""
    page = browser.new_page()
    seen = Visit(page)
    page.on("console", lambda message: seen.console.append((message.type, message.text)))
    page.on("request", lambda request: seen.requests.append(request.url))
    page.on("pageerror", lambda error: seen.errors.append(str(error)))

    def dialog(box: Any) -> None:
        seen.dialogs.append(box.message)
        box.dismiss()

    page.on("dialog", dialog)
    page.goto(path.resolve().as_uri(), wait_until="load")
    return seen


REFUSED_FETCH = """() => new Promise(resolve => {
  document.addEventListener('securitypolicyviolation',
    event => resolve(event.effectiveDirective), {once: true});
  const picture = new Image();
  picture.src = 'http://127.0.0.1:9/pixel.png';
  document.body.appendChild(picture);
  setTimeout(() => resolve('no violation'), 5000);
})"""
"""Script for ``page.evaluate``: try to load an image from the network; resolves with the
directive of the Content-Security-Policy that refused it."""
