"""Engines that run the audit's per-image step on many cores: a local process pool and Ray Data.

Both implement :class:`audit.engine.Engine` and give the same rows as :class:`audit.engine.SequentialEngine`
(the networks always run on fixed-size batches, see :func:`audit.step.fixed_batch`); only the ``seconds``
column differs.

- :class:`LocalPool`: ``workers`` processes (spawned, one torch/OpenCV thread each). Each loads the restorers and
  the embedder once, on its first batch, and keeps them for both passes.
- :class:`RayEngine`: Ray Data. The photos are put in the object store with ``from_items`` and mapped with
  ``map_batches`` over actor pools: one pool for the clean pass, then a restorer pool (a GPU per actor when the
  cluster has GPUs) feeding an embedder pool; rows stream back to the driver as they are done.
  ``address`` joins a running cluster (``ray start --head`` / ``ray start --address=...``); without it a
  private local Ray instance is started and stopped with the engine.

:func:`make_engine` builds one from the CLI's ``--engine/--workers/--address``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import multiprocessing.util
import os
import pickle
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import cv2

from audit.engine import BatchTask, SequentialEngine, chunks
from audit.prepare import CleanFace
from audit.step import AuditStep, Item, StepRunner

__all__ = ["ENGINES", "LocalPool", "RayEngine", "add_engine_arguments", "engine_from_args", "make_engine"]

ENGINES = ("local", "ray")
REPO_ROOT = Path(__file__).resolve().parent.parent
# Sent to Ray workers on a cluster (code + weights/), not the outputs, data or tests.
RAY_EXCLUDES = [".git", "results", "tests", "docs", "examples", "bench", "**/__pycache__", "*.npz", "*.csv", "*.zip"]


def limit_threads() -> None:
    """One torch and one OpenCV thread per worker: the workers are the parallelism (and the results do not
    depend on the thread count)."""
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch  # heavy: imported in the worker process, not when this module is imported

    torch.set_num_threads(1)
    cv2.setNumThreads(1)


# ------------------------------------------------------------------------------------------------------------------
# Local process pool

_RUNNERS: dict[AuditStep, StepRunner] = {}  # per worker process: the loaded restorers and embedder


_STATES: dict[object, object] = {}  # per worker process: loaded state of Engine.map tasks, by task.key


def _work_task(task: BatchTask, batch: list) -> list:
    if task.key not in _STATES:
        _STATES[task.key] = task.load()
    return task.run(_STATES[task.key], batch)


def _work(stage: str, step: AuditStep, batch: list) -> list:
    runner = _RUNNERS.get(step)
    if runner is None:
        runner = _RUNNERS[step] = StepRunner(step)
        # Pool workers leave through os._exit, which skips atexit: close external restorers' temporary folders
        # with multiprocessing's own exit hook.
        multiprocessing.util.Finalize(runner, runner.close, exitpriority=10)
    return getattr(runner, stage)(batch)


class LocalPool:
    """``workers`` local processes; each loads the restorers and the embedder once.

    Args:
        workers: processes (default: every core, ``os.cpu_count()``).
    """

    name = "local"

    def __init__(self, workers: int | None = None):
        self.workers = int(workers or os.cpu_count() or 1)
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn, not fork: forking a process that already runs torch/OpenMP threads can hang the children.
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=limit_threads)
        return self._pool

    def _map(self, fn, args: tuple, batches: Iterable[list]) -> Iterator[list]:
        """``fn(*args, batch)`` in the workers as they complete, with at most 2 batches per worker in flight."""
        pool, pending = self._executor(), set()
        try:
            for batch in batches:
                pending.add(pool.submit(fn, *args, batch))
                if len(pending) >= 2 * self.workers:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        yield future.result()
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()
        except BrokenProcessPool as exc:
            raise RuntimeError("an audit worker process died (out of memory?); use fewer --workers or a smaller "
                               "--batch-size, then rerun with --resume") from exc
        finally:
            for future in pending:
                future.cancel()

    def clean(self, step: AuditStep, items: Iterable[Item]) -> Iterator[CleanFace]:
        for cleans in self._map(_work, ("clean", step), chunks(items, step.batch_size)):
            yield from cleans

    def audit(self, step: AuditStep, cleans: Sequence[CleanFace]) -> Iterator[list[dict]]:
        for rows in self._map(_work, ("audit", step), chunks(cleans, step.batch_size)):
            yield from rows

    def map(self, task: BatchTask, items: Iterable, batch_size: int) -> Iterator:
        for results in self._map(_work_task, (task,), chunks(items, batch_size)):
            yield from results

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def __enter__(self) -> LocalPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ------------------------------------------------------------------------------------------------------------------
# Ray Data


def _blocks(n: int, batch_size: int) -> int:
    """One block per batch: ``from_items`` otherwise makes one block of a small list and one actor gets it all."""
    return max(1, -(-n // batch_size))


class _RayStage:
    """A Ray Data actor running one stage of the step on batches of rows.

    Rows hold pickled Python objects (photos of any size, label dicts, clean faces, per-setting images): Arrow
    cannot type them, and pickling keeps them exactly as the other engines see them.
    """

    def __init__(self, step: AuditStep, stage: str):
        limit_threads()
        self.runner, self.stage = StepRunner(step), stage

    def __call__(self, batch: dict) -> dict:
        ids = list(batch["image_id"])
        if self.stage == "clean":
            cleans = self.runner.clean([pickle.loads(b) for b in batch["item"]])
            return {"image_id": ids, "clean": [pickle.dumps(c) for c in cleans]}
        cleans = [pickle.loads(b) for b in batch["clean"]]
        if self.stage == "restore":
            settings = self.runner.restore(cleans)
            return {"image_id": ids, "clean": list(batch["clean"]), "settings": [pickle.dumps(s) for s in settings]}
        rows = self.runner.measure(cleans, [pickle.loads(b) for b in batch["settings"]])
        return {"image_id": ids, "rows": [pickle.dumps(r) for r in rows]}


class _RayTask:
    """A Ray Data actor running an :class:`audit.engine.BatchTask` on batches of pickled items."""

    def __init__(self, task: BatchTask):
        limit_threads()
        self.task, self.state = task, task.load()

    def __call__(self, batch: dict) -> dict:
        items = [pickle.loads(b) for b in batch["item"]]
        return {"result": [pickle.dumps(r) for r in self.task.run(self.state, items)]}


class RayEngine:
    """Ray Data actor pools: the clean pass, then restorers feeding the embedder.

    Args:
        workers: actors per pool (default: the cluster's CPUs).
        address: a running cluster to join (``ray start --head`` prints it; ``"auto"`` finds a local one).
            ``None`` starts a private local Ray instance with ``workers`` CPUs, stopped by :meth:`close`.
        gpus_per_actor: GPUs of each restorer actor (default: 1 when the cluster has GPUs, else none); the
            restorer pool then has one actor per ``gpus_per_actor`` of the cluster's GPUs.
        cpus_per_actor: CPUs each actor reserves. 0.5 lets the restorer and embedder pools (``workers`` actors
            each) share ``workers`` CPUs; each actor runs one thread.
    """

    name = "ray"

    def __init__(self, workers: int | None = None, address: str | None = None, gpus_per_actor: float | None = None,
                 cpus_per_actor: float = 0.5):
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.requested, self.address = workers, address
        self.gpus_per_actor, self.cpus_per_actor = gpus_per_actor, cpus_per_actor
        self._started = False
        self._ray = None

    def _connect(self):
        if self._ray is not None:
            return self._ray
        try:
            import ray  # optional heavy dependency: only this engine needs it
        except ImportError as exc:
            raise RuntimeError("--engine ray needs Ray Data: pip install 'ray[data]' (pinned in requirements.txt)") \
                from exc
        if not ray.is_initialized():
            if self.address:
                # Joining a cluster: ship the code and weights/ to its nodes (outputs and data stay here).
                env = {"working_dir": str(REPO_ROOT), "excludes": RAY_EXCLUDES}
                try:
                    ray.init(address=self.address, runtime_env=env, log_to_driver=True)
                except (ConnectionError, RuntimeError, ValueError) as exc:
                    raise RuntimeError(f"cannot join the Ray cluster at {self.address!r} ({exc}); start one with "
                                       "`ray start --head` and pass the address it prints") from exc
            else:
                # address="local": a private instance even if a cluster runs on this machine.
                ray.init(address="local", num_cpus=self.requested or os.cpu_count(), include_dashboard=False,
                         runtime_env={"env_vars": {"PYTHONPATH": str(REPO_ROOT)}})
            self._started = True
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # the CLI and the app show their own progress
        self._ray = ray
        return ray

    @property
    def workers(self) -> int:
        ray = self._connect()
        return int(self.requested or max(1, int(ray.cluster_resources().get("CPU", 1))))

    def _pool(self, stage: str, step: AuditStep, ds, size: int, gpus: float = 0.0):
        ray = self._ray
        return ds.map_batches(_RayStage, fn_constructor_args=(step, stage), batch_size=step.batch_size,
                              batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=size),
                              num_cpus=self.cpus_per_actor, num_gpus=gpus)

    def _stream(self, ds, column: str) -> Iterator:
        for row in ds.iter_rows():
            yield pickle.loads(row[column])

    def clean(self, step: AuditStep, items: Iterable[Item]) -> Iterator[CleanFace]:
        if step.external:
            raise ValueError("--engine ray does not run --external restorers (they call a service with their own "
                             "bounded concurrency and temporary files); use --engine local")
        ray = self._connect()
        rows = [{"image_id": item[0], "item": pickle.dumps(item)} for item in items]
        if not rows:
            return
        ds = ray.data.from_items(rows, override_num_blocks=_blocks(len(rows), step.batch_size))
        yield from self._stream(self._pool("clean", step, ds, self.workers), "clean")

    def audit(self, step: AuditStep, cleans: Sequence[CleanFace]) -> Iterator[list[dict]]:
        ray = self._connect()
        if not cleans:
            return
        workers = self.workers
        gpus = float(ray.cluster_resources().get("GPU", 0))
        per_actor = self.gpus_per_actor if self.gpus_per_actor is not None else (1.0 if gpus else 0.0)
        restorers = max(1, int(gpus / per_actor)) if per_actor else workers
        ds = ray.data.from_items([{"image_id": c.image_id, "clean": pickle.dumps(c)} for c in cleans],
                                 override_num_blocks=_blocks(len(cleans), step.batch_size))
        ds = self._pool("restore", step, ds, restorers, gpus=per_actor)
        yield from self._stream(self._pool("measure", step, ds, workers), "rows")

    def map(self, task: BatchTask, items: Iterable, batch_size: int) -> Iterator:
        ray = self._connect()
        rows = [{"item": pickle.dumps(item)} for item in items]
        if not rows:
            return
        ds = ray.data.from_items(rows, override_num_blocks=_blocks(len(rows), batch_size)).map_batches(
            _RayTask, fn_constructor_args=(task,), batch_size=batch_size, batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=self.workers), num_cpus=self.cpus_per_actor)
        yield from self._stream(ds, "result")

    def close(self) -> None:
        if self._started and self._ray is not None:
            self._ray.shutdown()
        self._ray, self._started = None, False

    def __enter__(self) -> RayEngine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def make_engine(engine: str = "local", workers: int | None = None, address: str | None = None):
    """The engine for ``--engine/--workers/--address``: ``local`` with one worker runs in this process.

    Raises:
        ValueError: for an unknown engine, a bad worker count, or ``--address`` without ``--engine ray``.
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose one of {list(ENGINES)}")
    if workers is not None and workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    if engine == "ray":
        return RayEngine(workers, address)
    if address:
        raise ValueError("--address joins a Ray cluster: use it with --engine ray")
    n = workers or os.cpu_count() or 1
    return SequentialEngine() if n == 1 else LocalPool(n)


def add_engine_arguments(parser: argparse.ArgumentParser, resume: bool = True) -> None:
    """``--engine/--workers/--address/--batch-size`` (and ``--resume``), shared by ``python -m audit`` and
    ``python -m audit.safety``."""
    g = parser.add_argument_group("engine (same results whatever the engine)")
    g.add_argument("--engine", choices=ENGINES, default="local",
                   help="local: a process pool on this machine; ray: Ray Data actor pools (this machine or --address)")
    g.add_argument("--workers", type=int, default=None,
                   help="worker processes / actors per pool (default: every core here, or the cluster's CPUs)")
    g.add_argument("--address", default=None,
                   help="join a running Ray cluster (the address `ray start --head` prints; 'auto' finds a local one)")
    g.add_argument("--batch-size", type=int, default=16, help="faces per batch given to restorers and the embedder")
    if resume:
        g.add_argument("--resume", action="store_true",
                       help="keep the images already complete in OUT/per_image.csv and audit only the rest")


def engine_from_args(args: argparse.Namespace):
    """The engine the parsed ``--engine/--workers/--address`` ask for (see :func:`make_engine`)."""
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    return make_engine(args.engine, args.workers, args.address)
