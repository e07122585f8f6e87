"""The archive's manifest: one SQLite file in OUT that records every unit's state.

``OUT/manifest.sqlite`` (WAL journal, ``synchronous=FULL``) holds:

- ``meta``: what the archive is (its root, the model's and the calibration's SHA-256, the
  btd version, the settings that decide a report's content, format version:
  :func:`btd_core.archive.driver.resume_identity`), written when OUT is created and
  checked on every rerun, so a rerun into the same OUT resumes that archive and nothing
  else: its reports are never a mix of two models, calibrations, versions or settings;
- ``units``: one row per unit (:class:`~btd_core.archive.plan.Unit`): where its files
  are, the input hash planned this run (``fingerprint``) and the one its report was
  made from (``done_fingerprint``), its ``state`` (:data:`STATES`) with a ``reason``,
  the number of ``attempts``, the ``worker`` that ran it last (``host:pid``), the
  SHA-256 of its ``report.json`` and a JSON ``summary`` (top score, counts, ...);
- ``stamps``: each file's size, mtime and Study Instance UID from the last plan (so a
  rerun reads no DICOM header of an unchanged file).

Only the driver process writes it (one connection, each change one transaction); a unit
becomes ``done`` only after its report folder is complete and in place.  Readers (the
app, :mod:`btd_core.archive.index`) open it read-only while a run goes on.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from btd_core.archive.plan import FileStamp, Unit
from btd_core.errors import BtdError
from btd_core.findings.provenance import iso_utc, utc_now

MANIFEST_NAME = "manifest.sqlite"
FORMAT = "1"
"""The manifest's format; a manifest of another format is refused, never rewritten."""
STATES = ("pending", "running", "done", "failed", "gone")
"""``pending``: to scan; ``running``: handed to a worker (a run that stopped leaves
such units, and the next run scans them again); ``done``: its report is complete in
``OUT/studies/<folder>``; ``failed``: could not be scanned (``reason``; retried by the
next run); ``gone``: no longer found under the root (its report, if any, is kept)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS units(
    key TEXT PRIMARY KEY,
    folder TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    label TEXT NOT NULL,
    root TEXT NOT NULL,
    files TEXT,
    n_entries INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'running', 'done', 'failed', 'gone')),
    reason TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0,
    worker TEXT NOT NULL DEFAULT '',
    done_fingerprint TEXT,
    report_sha256 TEXT,
    summary TEXT,
    updated_utc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS stamps(
    relpath TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    kind TEXT NOT NULL,
    study_uid TEXT NOT NULL
);
"""


class ManifestError(BtdError, ValueError):
    """OUT holds something that is not this archive's manifest (or a damaged one)."""


@dataclass(frozen=True)
class UnitRow:
    """One row of ``units`` (see the module's notes); ``files`` decoded from JSON,
    ``summary`` from JSON (``{}`` when none)."""

    key: str
    folder: str
    kind: str
    label: str
    root: str
    files: tuple[str, ...] | None
    n_entries: int
    fingerprint: str
    state: str
    reason: str
    attempts: int
    worker: str
    done_fingerprint: str | None
    report_sha256: str | None
    summary: dict
    updated_utc: str


def _now() -> str:
    return iso_utc(utc_now())


def connect(path: Path, readonly: bool = False) -> sqlite3.Connection:
    """A connection to the manifest at ``path`` (WAL; read-only when asked)."""
    if readonly:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    else:
        connection = sqlite3.connect(path, timeout=30, isolation_level=None)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
    connection.row_factory = sqlite3.Row
    return connection


def read_meta(connection: sqlite3.Connection) -> dict[str, str]:
    """The ``meta`` table as a dict."""
    return {row["key"]: row["value"] for row in connection.execute("SELECT key, value FROM meta")}


def row_of(row: sqlite3.Row) -> UnitRow:
    """A ``units`` row as a :class:`UnitRow`."""
    files = json.loads(row["files"]) if row["files"] is not None else None
    return UnitRow(
        key=row["key"],
        folder=row["folder"],
        kind=row["kind"],
        label=row["label"],
        root=row["root"],
        files=tuple(files) if files is not None else None,
        n_entries=row["n_entries"],
        fingerprint=row["fingerprint"],
        state=row["state"],
        reason=row["reason"],
        attempts=row["attempts"],
        worker=row["worker"],
        done_fingerprint=row["done_fingerprint"],
        report_sha256=row["report_sha256"],
        summary=json.loads(row["summary"]) if row["summary"] else {},
        updated_utc=row["updated_utc"],
    )


def identity_differences(stored: Mapping[str, str], identity: Mapping[str, str]) -> list[str]:
    """What differs between a manifest's stored identity and this run's, one line each:
    ``key: 'old' there, 'new' now``; the report settings (JSON) field by field
    (``report_settings.outputs.include_phi: True there, False now``); a key an older
    btd did not record: ``not recorded there``."""
    lines = []
    for key, value in identity.items():
        old = stored.get(key)
        if old == value:
            continue
        if old is None:
            lines.append(f"{key}: not recorded there (made by an older btd), {value!r} now")
            continue
        try:
            before, after = _flat(json.loads(old), key), _flat(json.loads(value), key)
        except ValueError:
            before = after = None
        if isinstance(before, dict) and isinstance(after, dict):
            lines += [
                f"{name}: {before.get(name, '(none)')!r} there, {after.get(name, '(none)')!r} now"
                for name in sorted(before.keys() | after.keys())
                if before.get(name) != after.get(name)
            ]
        else:
            lines.append(f"{key}: {old!r} there, {value!r} now")
    return lines


def _flat(value: object, prefix: str) -> object:
    """A JSON object as ``{dotted.name: leaf}``; anything else as it is."""
    if not isinstance(value, dict):
        return value
    flat: dict[str, object] = {}
    for name, item in value.items():
        inner = _flat(item, f"{prefix}.{name}")
        if isinstance(inner, dict):
            flat.update(inner)
        else:
            flat[f"{prefix}.{name}"] = inner
    return flat


class Manifest:
    """The manifest of one archive, opened by the driver (the only writer)."""

    def __init__(self, out: Path) -> None:
        self.path = Path(out) / MANIFEST_NAME
        self._db = connect(self.path)
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the connection (the WAL is checkpointed into the file)."""
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # ------------------------------------------------------------------ identity

    def meta(self) -> dict[str, str]:
        """The ``meta`` table."""
        return read_meta(self._db)

    def claim(self, identity: Mapping[str, str]) -> bool:
        """Tie a new manifest to ``identity`` (root, model, settings), or check that an
        existing one is that archive; returns whether it was new.

        Raises
        ------
        ManifestError
            The manifest is of another format, or of another root, model or settings
            (each difference named).
        """
        meta = self.meta()
        if not meta:
            with self._transaction() as db:
                db.executemany(
                    "INSERT INTO meta(key, value) VALUES (?, ?)",
                    [("format", FORMAT), ("created_utc", _now()), *identity.items()],
                )
            return True
        if meta.get("format") != FORMAT:
            raise ManifestError(f"the manifest {self.path} is of format {meta.get('format')!r}")
        differences = identity_differences(meta, identity)
        if differences:
            raise ManifestError(
                f"{self.path.parent} holds an archive made with other inputs or settings "
                f"({'; '.join(differences)}): its reports were made with those, and an archive "
                "never mixes reports made two ways. Resume it with the same model, calibration, "
                "btd version and settings, or choose a new --out to scan everything with these"
            )
        return False

    # ------------------------------------------------------------------ stamps

    def stamps(self) -> dict[str, FileStamp]:
        """Every file's stamp from the last plan."""
        rows = self._db.execute("SELECT relpath, size, mtime_ns, kind, study_uid FROM stamps")
        return {r[0]: FileStamp(r[1], r[2], r[3], r[4]) for r in rows}

    def store_stamps(self, stamps: Mapping[str, FileStamp]) -> None:
        """Replace the stored stamps with ``stamps``."""
        with self._transaction() as db:
            db.execute("DELETE FROM stamps")
            db.executemany(
                "INSERT INTO stamps VALUES (?, ?, ?, ?, ?)",
                [(r, s.size, s.mtime_ns, s.kind, s.study_uid) for r, s in stamps.items()],
            )

    # ------------------------------------------------------------------ units

    def units(self) -> list[UnitRow]:
        """Every unit, by key."""
        return [row_of(r) for r in self._db.execute("SELECT * FROM units ORDER BY key")]

    def unit(self, key: str) -> UnitRow:
        """One unit (``KeyError`` when there is none)."""
        row = self._db.execute("SELECT * FROM units WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise KeyError(key)
        return row_of(row)

    def reconcile(self, units: Iterable[Unit], report_ok: dict[str, bool]) -> dict[str, int]:
        """Bring the manifest in line with this run's plan, in one transaction.

        A planned unit that is new becomes ``pending``; one ``done`` with the same input
        hash and an intact report (``report_ok[key]``) stays ``done``; every other one
        becomes ``pending`` with the reason (input changed, report missing or altered,
        interrupted while running, failed before: retried).  A unit no longer planned
        becomes ``gone``.  Returns how many units of each outcome there are
        (``new``, ``kept``, ``changed``, ``rescan``, ``retry``, ``gone``).
        """
        counts = dict.fromkeys(("new", "kept", "changed", "rescan", "retry", "gone"), 0)
        now = _now()
        with self._transaction() as db:
            known = {r["key"]: row_of(r) for r in db.execute("SELECT * FROM units")}
            planned = set()
            for unit in units:
                planned.add(unit.key)
                files = json.dumps(list(unit.files)) if unit.files is not None else None
                fields = (unit.kind, unit.label, unit.root, files, len(unit.entries))
                print_ = unit.fingerprint
                old = known.get(unit.key)
                if old is None:
                    db.execute(
                        "INSERT INTO units(key, folder, kind, label, root, files, n_entries, "
                        "fingerprint, state, updated_utc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, "
                        "'pending', ?)",
                        (unit.key, unit.folder_name, *fields, print_, now),
                    )
                    counts["new"] += 1
                    continue
                state, reason = old.state, old.reason
                if (
                    old.state == "done"
                    and old.done_fingerprint == print_
                    and report_ok.get(unit.key, False)
                ):
                    counts["kept"] += 1
                elif old.state == "done" and old.done_fingerprint != print_:
                    state, reason = "pending", "input changed since its report: scanned again"
                    counts["changed"] += 1
                elif old.state == "done":
                    state, reason = "pending", "its report is missing or altered: scanned again"
                    counts["rescan"] += 1
                else:
                    before = {
                        "running": "an earlier run stopped while it was being scanned",
                        "failed": f"failed before ({old.reason}): retried",
                        "gone": "found again under the root",
                    }.get(old.state, old.reason)
                    state, reason = "pending", before
                    counts["retry" if old.state != "pending" else "new"] += 1
                db.execute(
                    "UPDATE units SET kind = ?, label = ?, root = ?, files = ?, n_entries = ?, "
                    "fingerprint = ?, state = ?, reason = ?, updated_utc = ? WHERE key = ?",
                    (*fields, print_, state, reason, now, unit.key),
                )
            for key, old in known.items():
                if key not in planned and old.state != "gone":
                    db.execute(
                        "UPDATE units SET state = 'gone', reason = ?, updated_utc = ? "
                        "WHERE key = ?",
                        ("no longer found under the root", now, key),
                    )
                    counts["gone"] += 1
        return counts

    def mark_running(self, key: str, worker: str = "") -> None:
        """The unit was handed to a worker (one more attempt)."""
        self._set(key, "running", "", worker=worker, attempt=True)

    def mark_worker(self, key: str, worker: str) -> None:
        """Which worker (``host:pid``) runs the unit now."""
        with self._transaction() as db:
            db.execute("UPDATE units SET worker = ? WHERE key = ?", (worker, key))

    def mark_pending(self, key: str, reason: str) -> None:
        """Back to ``pending`` (interrupted, or its worker died and it will be retried)."""
        self._set(key, "pending", reason)

    def mark_failed(self, key: str, reason: str) -> None:
        """The unit could not be scanned (``reason``); the next run retries it."""
        self._set(key, "failed", reason)

    def mark_done(
        self, key: str, done_fingerprint: str, report_sha256: str, summary: Mapping[str, object]
    ) -> None:
        """The unit's report is complete and in place: ``done``, with the input hash it
        was made from, its ``report.json``'s SHA-256 and its summary."""
        with self._transaction() as db:
            db.execute(
                "UPDATE units SET state = 'done', reason = '', done_fingerprint = ?, "
                "report_sha256 = ?, summary = ?, updated_utc = ? WHERE key = ?",
                (done_fingerprint, report_sha256, json.dumps(dict(summary)), _now(), key),
            )

    def _set(self, key: str, state: str, reason: str, worker: str = "", attempt: bool = False):
        with self._transaction() as db:
            db.execute(
                "UPDATE units SET state = ?, reason = ?, updated_utc = ?, "
                "attempts = attempts + ?, worker = CASE WHEN ? != '' THEN ? ELSE worker END "
                "WHERE key = ?",
                (state, reason, _now(), 1 if attempt else 0, worker, worker, key),
            )
