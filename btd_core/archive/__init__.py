"""Auditing an archive: thousands of studies, resumable, on one machine or a Ray cluster.

``btd archive ROOT --model m.onnx --out OUT`` finds every study under ROOT
(:mod:`~btd_core.archive.plan`), records each unit of work in a SQLite manifest
(:mod:`~btd_core.archive.manifest`), scans the units with the same engine and reports as
``btd scan`` (:mod:`~btd_core.archive.unit_scan`) in worker processes on this machine
(:mod:`~btd_core.archive.local`) or Ray actors (:mod:`~btd_core.archive.ray_exec`),
driven from one place (:mod:`~btd_core.archive.driver`), and ranks all studies
(:mod:`~btd_core.archive.summary`); :mod:`~btd_core.archive.index` reads an archive back
(for the app).  Runtime world: never imports torch; Ray only inside ``ray_exec``.
"""
