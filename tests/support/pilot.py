"""Driving the TUI in tests: run an app headless, wait on it, read its screen."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


def run_app(app, test: Callable, size: tuple[int, int] = (120, 40)):
    """Run ``await test(pilot)`` inside ``app.run_test`` (no pytest-asyncio needed)."""

    async def main():
        async with app.run_test(size=size) as pilot:
            return await test(pilot)

    return asyncio.run(main())


async def wait_for(pilot, predicate: Callable[[], bool], timeout: float = 120.0, what: str = ""):
    """Pause the pilot until ``predicate()`` holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what or predicate}")
        await pilot.pause(0.05)


def screen_text(app) -> str:
    """What the terminal shows now, as plain text lines."""
    strips = app.screen._compositor.render_strips()
    return "\n".join(strip.text for strip in strips)
