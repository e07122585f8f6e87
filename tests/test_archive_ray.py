"""``btd archive --ray``: real Ray actors on a local cluster started by the test
(``ray.init(num_cpus=2)``); one actor is killed mid-run with ``os.kill`` on its pid, and
the archive still ends with every study's report equal to the embedded run's."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from btd_core.archive.driver import run_archive
from btd_core.archive.executor import Event
from btd_core.archive.index import read_archive
from btd_core.archive.local import LocalExecutor
from tests.onnx_scorer import build_scorer
from tests.study_builder import write_series
from tests.support.archive_tree import build_archive, config_for, report_csvs

ray = pytest.importorskip("ray", reason="needs the archive extra: pip install '.[archive]'")
# ray: needs the archive extra (CI runs it with the extras); one xdist worker (--dist
# loadgroup) starts this module's Ray cluster (4 s), not each
pytestmark = [pytest.mark.ray, pytest.mark.xdist_group("ray")]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real ONNX CT scorer with 32 px patches (fits 128 px slices)."""
    return build_scorer(tmp_path_factory.mktemp("model") / "ct32.onnx", patch_size=32)


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray cluster of 2 CPUs, for this module only."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_a_killed_actor_loses_nothing_and_reports_equal_the_embedded_run(
    local_ray, model: Path, tmp_path: Path
):
    from btd_core.archive.ray_exec import RayExecutor, actor_pid

    root = tmp_path / "root"
    build_archive(root, slices=4)
    embedded = tmp_path / "embedded"
    reference = run_archive(root, embedded, config_for(model), lambda c: LocalExecutor(c, 1))
    assert reference.done_now == 8
    killed: list[str] = []

    def kill_one(state) -> None:  # the first unit's actor dies as soon as it holds the unit
        event: Event | None = state.event
        if event is not None and event.kind == "started" and not killed:
            killed.append(event.key)
            os.kill(actor_pid(event.worker), signal.SIGKILL)

    out = tmp_path / "ray"
    result = run_archive(
        root, out, config_for(model), lambda c: RayExecutor(c, "auto", 2), on_progress=kill_one
    )
    assert killed and result.retried_workers >= 1
    assert result.done_now == 8 and result.failed_now == 0
    attempts = {s.key: s.attempts for s in read_archive(out).studies}
    assert attempts[killed[0]] == 2
    assert report_csvs(out) == report_csvs(embedded)
    assert ray.is_initialized()  # the test's runtime is left to the test


def test_the_ray_executor_says_how_it_ran(local_ray, model: Path, tmp_path: Path):
    import json

    from btd_core.archive.ray_exec import RayExecutor

    root = tmp_path / "root"
    write_series(root / "one", "CT_small.dcm", 2, seed=30)
    out = tmp_path / "out"
    result = run_archive(root, out, config_for(model), lambda c: RayExecutor(c, "auto", 1))
    assert result.done_now == 1
    record = json.loads((out / "archive.json").read_text())
    assert record["executor"].startswith("ray (auto): 1 actor(s)")
    assert record["providers_in_use"] == ["CPUExecutionProvider"]
