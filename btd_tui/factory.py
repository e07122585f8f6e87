"""The one way to build the audit app (used by ``btd audit``, ``btd demo`` and the tests).

:func:`create_app` lives in :mod:`btd_tui.app` (so ``from btd_tui.app import create_app``
works too); it is re-exported here.
"""

from __future__ import annotations

from btd_tui.app import BtdApp, create_app

__all__ = ["BtdApp", "create_app"]
