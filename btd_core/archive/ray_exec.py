"""The Ray executor: one scorer per Ray actor, on one machine, a multi-GPU node or a cluster.

``btd archive --ray local|auto|ADDRESS``: ``local`` starts a Ray runtime on this machine
(stopped at the end), ``auto`` joins the cluster this machine belongs to (``ray start
--head`` / ``ray start --address``), an ADDRESS joins that head.  A driver that already
called ``ray.init`` (a test, a notebook) uses that runtime as it is.

Each actor opens one onnxruntime session and keeps it; with GPUs in the cluster (and a
provider other than ``cpu``) each actor asks Ray for one GPU, and Ray pins it to that GPU
(``CUDA_VISIBLE_DEVICES``), else for one CPU with one onnxruntime thread.  A unit is sent
as its paths only: the actor reads the study where it lies (the root must be on a file
system every node mounts at the same path), so no pixel goes through the object store;
the report comes back as bytes (a few hundred KB per study) and only the driver writes
OUT and the manifest.  An actor that dies (killed, out of memory, its node lost) is
seen as Ray's ``RayActorError`` on its unit: exactly that unit is retried and a new
actor takes its place.

Ray is an optional extra (``pip install 'btd[archive]'``): it is imported only here,
only when ``--ray`` is given, and a clear message says how to get it when missing.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from btd_core.archive.executor import Event, ExecutorError
from btd_core.archive.unit_scan import UnitOutcome, UnitTask, WorkerConfig

READY_TIMEOUT_S = 600.0
"""Seconds an actor may take to start and open its model."""
RAY_MISSING = (
    "--ray needs Ray, which is not installed: pip install 'btd[archive]' (or ray>=2.9) on "
    "this machine and on every node of the cluster"
)


def import_ray() -> Any:
    """The ``ray`` module, or :class:`ExecutorError` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ExecutorError(RAY_MISSING) from None
    return ray


class UnitActor:
    """A Ray actor's body: one scorer, opened once, scanning unit after unit."""

    def __init__(self, config: WorkerConfig) -> None:
        from btd_core.archive.unit_scan import UnitScanner, worker_name

        self.name = worker_name()
        self.error = ""
        self.scanner: Any = None
        try:
            self.scanner = UnitScanner(config)
        except Exception as exc:  # told to the driver by ready(): the run cannot go on
            self.error = f"{type(exc).__name__}: {exc}"

    def ready(self) -> tuple[str, str, str]:
        """``(host:pid, provider in use, error)``; error is ``""`` when it can scan."""
        provider = self.scanner.scorer.provider_in_use if self.scanner else ""
        return self.name, provider, self.error

    def scan(self, task: UnitTask) -> UnitOutcome:
        """Scan one unit (see :meth:`btd_core.archive.unit_scan.UnitScanner.scan`)."""
        return self.scanner.scan(task)


class RayExecutor:
    """Units on Ray actors (see the module's notes).

    ``address``: ``local``, ``auto`` or ``host:port``; ``jobs``: actors (``None``: one per
    GPU of the cluster, else one per CPU).
    """

    def __init__(self, config: WorkerConfig, address: str = "auto", jobs: int | None = None):
        self.config = config
        self.address = address
        self.jobs = jobs
        self.description = f"ray ({address})"
        self.providers: set[str] = set()
        self._ray: Any = None
        self._owns_runtime = False
        self._actor_class: Any = None
        self._actors: list[Any] = []
        self._names: dict[Any, str] = {}
        self._busy: dict[Any, tuple[Any, str]] = {}  # object ref -> (actor, key)
        self._gpu = False

    def start(self) -> None:
        """Join or start Ray, then start the actors and wait until each opened its model."""
        ray = self._ray = import_ray()
        if not ray.is_initialized():
            options: dict[str, Any] = {"log_to_driver": False, "include_dashboard": False}
            try:
                if self.address == "local":
                    ray.init(num_cpus=self.jobs, **options)
                else:
                    ray.init(address=self.address, **options)
            except (ConnectionError, RuntimeError, ValueError) as err:
                message = f"cannot reach the Ray cluster at {self.address}: {err}"
                raise ExecutorError(message) from None
            self._owns_runtime = True
        resources = ray.cluster_resources()
        gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 1))
        self._gpu = gpus > 0 and self.config.scan.provider != "cpu"
        count = self.jobs or (gpus if self._gpu else max(1, cpus))
        config = self.config
        if not self._gpu:
            engine = config.scan.engine
            if engine.threads is None:
                engine = replace(engine, threads=1)
            config = config.with_scan(engine=engine, provider="cpu")
        if config.scan.settings.workers is None:
            config = config.with_scan(settings=replace(config.scan.settings, workers=1))
        self.config = config
        need = {"num_gpus": 1, "num_cpus": 1} if self._gpu else {"num_cpus": 1}
        self._actor_class = ray.remote(max_restarts=0, max_task_retries=0, **need)(UnitActor)
        nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
        kind = f"{gpus} GPU(s)" if self._gpu else f"{cpus} CPU(s)"
        self.description = (
            f"ray ({self.address}): {count} actor(s), one scorer each, on {nodes} node(s) "
            f"with {kind}"
        )
        actors = [self._actor_class.remote(self.config) for _ in range(count)]
        try:
            for actor in actors:
                self._admit(actor)
        except BaseException:
            self.close()
            raise

    def _admit(self, actor: Any) -> None:
        ray = self._ray
        try:
            name, provider, error = ray.get(actor.ready.remote(), timeout=READY_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError:
            message = "a Ray actor did not start in time (not enough resources?)"
            raise ExecutorError(message) from None
        except ray.exceptions.RayError as err:
            raise ExecutorError(f"a Ray actor could not start: {err}") from None
        if error:
            raise ExecutorError(f"a Ray actor cannot open the model: {error}")
        self._actors.append(actor)
        self._names[actor] = name
        self.providers.add(provider)

    def idle(self) -> int:
        """Actors without a unit."""
        return len(self._actors) - len(self._busy)

    def busy(self) -> int:
        """Units in flight."""
        return len(self._busy)

    def submit(self, task: UnitTask) -> Event:
        """Send ``task`` to an idle actor (only its paths travel)."""
        taken = {actor for actor, _ in self._busy.values()}
        actor = next(a for a in self._actors if a not in taken)
        ref = actor.scan.remote(task)
        self._busy[ref] = (actor, task.key)
        return Event("started", task.key, worker=self._names[actor])

    def poll(self, timeout: float) -> list[Event]:
        """Finished units, and units whose actor died (the actor is replaced)."""
        ray = self._ray
        if not self._busy:
            return []
        refs = list(self._busy)
        ready, _ = ray.wait(refs, num_returns=1, timeout=timeout)
        if ready:
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        events = []
        for ref in ready:
            actor, key = self._busy.pop(ref)
            name = self._names.get(actor, "")
            try:
                outcome: UnitOutcome = ray.get(ref)
            except ray.exceptions.RayActorError as err:
                reason = f"Ray actor {name} died during the unit ({type(err).__name__})"
                events.append(Event("lost", key, name, reason=reason))
                self._replace(actor)
                continue
            except ray.exceptions.RayTaskError as err:
                outcome = UnitOutcome(key, "error", name, f"{type(err).__name__}: {err}"[:300])
            events.append(Event("finished", key, name, outcome=outcome))
        return events

    def _replace(self, dead: Any) -> None:
        self._actors.remove(dead)
        self._names.pop(dead, None)
        self._ray.kill(dead, no_restart=True)
        self._admit(self._actor_class.remote(self.config))

    def stop_units(self) -> list[Event]:
        """Ctrl-C: the busy actors are ended at once; their units are given up (they go
        back to pending, nothing of them is kept)."""
        events = []
        for ref, (actor, key) in list(self._busy.items()):
            self._ray.kill(actor, no_restart=True)
            events.append(Event("lost", key, self._names.get(actor, ""), reason="stopped"))
            del self._busy[ref]
            self._actors.remove(actor)
        return events

    def close(self) -> None:
        """End the actors; stop the Ray runtime when this executor started it."""
        ray = self._ray
        if ray is None:
            return
        for actor in self._actors:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # already gone
                continue
        self._actors, self._busy = [], {}
        if self._owns_runtime:
            ray.shutdown()
            self._owns_runtime = False


def actor_pid(worker: str) -> int:
    """The process id in a worker name ``host:pid``."""
    return int(worker.rsplit(":", 1)[1])
