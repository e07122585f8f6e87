"""The one base of every error btd raises on purpose (:class:`BtdError`).

Each btd error class derives from :class:`BtdError`; most also keep a builtin base
(``ValueError``, ``RuntimeError``, ``OSError``, ``TimeoutError``) by multiple
inheritance, so that code catching the builtin keeps working.  The command layer catches
:class:`BtdError` alone to say "this command cannot run" (exit status 2, one line in
red): a new error class needs no list kept by hand.  Importing this module loads nothing
else (``btd --help`` stays fast, the runtime never loads torch).
"""

from __future__ import annotations


class BtdError(Exception):
    """An error btd raises on purpose; its message says what went wrong in plain words."""
