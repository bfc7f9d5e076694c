"""The audit driver: the gallery, the engine protocol, the sequential engine and :func:`run_audit`.

Two passes over the data, each run by an :class:`Engine` (this process, a process pool or Ray Data: see
:mod:`audit.parallel`) on batches of faces with the pure per-image step of :mod:`audit.step`:

1. *Clean pass* (:func:`audit.prepare.prepare_face`): crop each face, embed it, and form its groups (dataset
   labels and/or predictions). The clean embeddings become the **gallery** used for the match threshold
   (calibrated on impostor pairs at a fixed false-match rate) and for rank-1 re-identification.
2. *Per-image pass*: for every degradation × strength × restorer, degrade, restore, embed and measure
   (:func:`audit.step.restore_chunk`, :func:`audit.step.measure_chunk`); the driver adds the gallery's part
   (:func:`audit.step.finish_rows`). :func:`audit_image` is the same step for one face.

:func:`run_audit` ties both passes together, appends each image's rows to ``per_image.csv`` as soon as
they are computed (a crash or Ctrl-C keeps every finished image; ``resume=True`` keeps them and audits the
rest), then writes the group report.
"""

from __future__ import annotations

import csv
import itertools
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

from audit import report
from audit.config import ROW_FIELDS, AuditConfig
from audit.data import face_source
from audit.prepare import CleanFace, prepare_face, to_crop
from audit.stats import Threshold, calibrate_threshold
from audit.step import AuditStep, Item, StepRunner, finish_rows, measure_chunk, resolve_restorers, restore_chunk
from deblur.embed import PUBLISHED_THRESHOLDS, Embedder
from deblur.restore import close_restorers

# AuditConfig and ROW_FIELDS live in audit.config, the clean pass (CleanFace, prepare_face, to_crop) in audit.prepare,
# the per-image step (AuditStep, resolve_restorers) in audit.step; re-exported for existing callers.
__all__ = ["ROW_FIELDS", "AuditConfig", "AuditResult", "AuditStep", "BatchTask", "CleanFace", "Engine", "Gallery",
           "SequentialEngine", "audit_image", "chunks", "count_statuses", "prepare_face", "resolve_restorers",
           "run_audit", "to_crop"]


@dataclass
class Gallery:
    """Clean embeddings of every audited face: the reference for matching and re-identification.

    Attributes:
        ids: image id of each row of ``embeddings``.
        embeddings: ``N x D`` clean embeddings (faces whose clean image had no face are not in it).
        centre: mean embedding, subtracted before cosine similarity.
        threshold: match threshold on L2 distance (``None`` until calibrated; needs ≥ 2 faces).
    """

    ids: list[str]
    embeddings: np.ndarray
    centre: np.ndarray
    threshold: Threshold | None = None
    identities: list[str] | None = None

    @classmethod
    def build(cls, ids: Sequence[str], embeddings: Sequence[np.ndarray], fmr: float = 0.01, seed: int = 0,
              identities: Sequence[str] | None = None, embedder_key: str | None = None) -> Gallery:
        """Gallery with its threshold calibrated at false-match rate ``fmr`` (if there are ≥ 2 faces).

        Args:
            identities: who each face is (an identity column); impostor pairs are then only pairs of
                different people, same-person pairs give the FNMR, and rank-1 counts a hit when the nearest
                clean face is the same person. ``None``: every image is a different person.
            embedder_key: with too few impostor pairs for ``fmr``, this embedder's published threshold
                (:data:`deblur.embed.PUBLISHED_THRESHOLDS`) is used instead, and the threshold says so.
        """
        if len(ids) != len(embeddings):
            raise ValueError(f"{len(ids)} ids for {len(embeddings)} embeddings")
        if not len(ids):
            raise ValueError("no clean face could be embedded: the gallery is empty; check the data and crop mode")
        if identities is not None and len(identities) != len(ids):
            raise ValueError(f"{len(identities)} identities for {len(ids)} faces")
        e = np.stack([np.asarray(x, float) for x in embeddings])
        published = PUBLISHED_THRESHOLDS.get(embedder_key) if embedder_key else None
        fallback = (published.distance, published.source) if published else None
        threshold = calibrate_threshold(e, fmr, seed, identities, fallback) if len(ids) >= 2 else None
        return cls(list(ids), e, e.mean(axis=0), threshold, None if identities is None else list(identities))

    def embedding_of(self, image_id: str) -> np.ndarray:
        """The clean embedding of ``image_id``."""
        if getattr(self, "_index", None) is None:
            self._index = {i: k for k, i in enumerate(self.ids)}
        return self.embeddings[self._index[image_id]]

    def rank1(self, embedding: np.ndarray | None, own_id: str) -> bool:
        """Whether the nearest clean face to ``embedding`` is its own original -- or, with identities, any
        clean photo of the same person (re-identified)."""
        if embedding is None:
            return False
        d = np.linalg.norm(self.embeddings - np.asarray(embedding, float), axis=1)
        nearest = int(np.argmin(d))
        if self.identities is None:
            return self.ids[nearest] == own_id
        return self.identities[nearest] == self.identities[self.ids.index(own_id)]

    def matches(self, distance: float) -> bool:
        """Match decision at the calibrated threshold (NaN distance: no match)."""
        if self.threshold is None:
            raise ValueError("the gallery has no threshold: calibration needs at least 2 clean faces")
        return bool(np.isfinite(distance) and distance <= self.threshold.distance)


def audit_image(clean: CleanFace, *, restorers: Mapping[str, Mapping[str, object]],
                degradations: Mapping[str, Sequence[float]], embedder: Embedder, gallery: Gallery) -> list[dict]:
    """All measurements of one clean face: one row per degradation × strength × restorer.

    Pure: depends only on its arguments and writes nothing. The engines run the same two halves
    (:func:`restore_chunk`, :func:`measure_chunk`) on chunks of faces, and :func:`finish_rows` in the driver.

    Args:
        clean: the face from :func:`prepare_face` (its ``groups`` are copied into every row).
        restorers: degradation kind → {restorer name → restorer} (the ``Restorer`` protocol of
            ``docs/CONTRACTS.md``); restorers that do not handle a kind are simply absent for it.
        degradations: degradation kind → strengths (pixels of the crop).
        embedder: the embedder that made the gallery.
        gallery: clean gallery (threshold, centre, rank-1); it must contain ``clean`` if it has a face.

    Returns:
        Rows (dicts with :data:`ROW_FIELDS` plus the group columns). ``status`` is ``ok``,
        ``no_face_clean``, ``no_face_restored``, ``error:<reason>`` for a failed external call (reasons in
        :data:`deblur.restore.external.FAILURE_REASONS`, details in ``note``) or ``error:<Type>: <message>``; no case
        is dropped. ``note`` also says when an external output was resized back.
    """
    settings = restore_chunk([clean], restorers, degradations)
    return finish_rows(measure_chunk([clean], settings, restorers, degradations, embedder)[0], gallery)


# ----------------------------------------------------------------------------------------------------------------
# Driver


@dataclass
class AuditResult:
    """Where an audit wrote its outputs, and its headline numbers."""

    out: Path
    per_image_csv: Path
    groups_csv: Path | None
    threshold: Threshold | None
    n_images: int
    n_no_face_clean: int
    skipped: list[dict]
    files: list[Path]
    seconds: float
    group_table: object = None  # pandas DataFrame of the group report
    n_resumed: int = 0  # images whose rows were kept from an earlier run (--resume)
    engine: str = "sequential"
    status_counts: dict = field(default_factory=dict)  # model -> {status kind -> rows}, e.g. "error:timeout"


def count_statuses(per_image_csv: str | Path) -> dict[str, dict[str, int]]:
    """Rows per model and status kind of a ``per_image.csv``: ``{"mine": {"ok": 12, "error:timeout": 2}}``.

    The kind of ``"error:ValueError: message"`` is ``"error:ValueError"``; external failures are already short
    (``"error:timeout"``).
    """
    counts: dict[str, dict[str, int]] = {}
    with open(per_image_csv, newline="") as fh:
        for row in csv.DictReader(fh):
            kind = str(row.get("status", "")).split(": ", 1)[0]
            tally = counts.setdefault(row.get("model") or "", {})
            tally[kind] = tally.get(kind, 0) + 1
    return counts


ProgressFn = Callable[[str, int, int], None]


def chunks(seq: Iterable, size: int) -> Iterator[list]:
    """Consecutive lists of ``size`` items (the last may be shorter)."""
    it = iter(seq)
    while part := list(itertools.islice(it, size)):
        yield part


@runtime_checkable
class Engine(Protocol):
    """Runs the per-image step over many faces. Results may come back in any order.

    :class:`SequentialEngine` runs in this process; ``audit.parallel`` has a process pool and Ray Data.
    """

    name: str

    def clean(self, step: AuditStep, items: Iterable[Item]) -> Iterator[CleanFace]:
        """First pass of every item."""
        ...

    def audit(self, step: AuditStep, cleans: Sequence[CleanFace]) -> Iterator[list[dict]]:
        """Gallery-free rows of each clean face (one list per face, see :func:`measure_chunk`)."""
        ...

    def map(self, task: BatchTask, items: Iterable, batch_size: int) -> Iterator:
        """``task(batch)`` over batches of ``items``; one result per item (used by ``audit.safety``)."""
        ...

    def close(self) -> None:
        ...


@runtime_checkable
class BatchTask(Protocol):
    """Work an engine maps over batches: picklable and small; heavy state (models) loads once per worker.

    Attributes:
        key: hashable identity of what :meth:`load` returns: a worker loads it once per key and reuses it.
    """

    key: object

    def load(self) -> object:
        """The heavy state (embedder, restorers...)."""
        ...

    def run(self, state: object, batch: list) -> list:
        """One result per item of ``batch``."""
        ...


class SequentialEngine:
    """The per-image step in this process, batch after batch (``--engine local --workers 1``)."""

    name = "sequential"

    def __init__(self) -> None:
        self._runners: dict[AuditStep, StepRunner] = {}
        self._states: dict[object, object] = {}  # loaded state of Engine.map tasks

    def _runner(self, step: AuditStep) -> StepRunner:
        return self._runners.setdefault(step, StepRunner(step))

    def clean(self, step: AuditStep, items: Iterable[Item]) -> Iterator[CleanFace]:
        for part in chunks(items, step.batch_size):
            yield from self._runner(step).clean(part)

    def audit(self, step: AuditStep, cleans: Sequence[CleanFace]) -> Iterator[list[dict]]:
        for part in chunks(cleans, step.batch_size):
            yield from self._runner(step).audit(part)

    def map(self, task: BatchTask, items: Iterable, batch_size: int) -> Iterator:
        if task.key not in self._states:
            self._states[task.key] = task.load()
        for part in chunks(items, batch_size):
            yield from task.run(self._states[task.key], part)

    def close(self) -> None:
        for runner in self._runners.values():
            runner.close()
        self._runners.clear()
        self._states.clear()

    def __enter__(self) -> SequentialEngine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def expected_settings(restorers: Mapping[str, Mapping[str, object]],
                      degradations: Mapping[str, Sequence[float]]) -> set[tuple[str, str, float]]:
    """The (model, degradation, strength) of every row one image gets."""
    return {(name, kind, float(s)) for kind, strengths in degradations.items() for s in strengths
            for name in restorers.get(kind, {})}


def _resume_rows(per_image: Path, fields: Sequence[str], wanted: set[tuple[str, str, float]],
                 threshold: Threshold | None) -> tuple[list[dict], set[str]]:
    """Rows of the images that are complete in an existing ``per_image.csv``, and their ids.

    Raises:
        ValueError: when the file was written by a different audit (other columns or threshold).
    """
    try:
        old = pd.read_csv(per_image, dtype={"image_id": str}, keep_default_na=False)
    except pd.errors.EmptyDataError:
        return [], set()
    if list(old.columns) != list(fields):
        raise ValueError(f"{per_image} has other columns than this audit writes: it comes from a different audit "
                         "(data, labels or predictions); choose another --out or drop --resume")
    if len(old):
        thr = threshold.distance if threshold else math.nan
        seen = pd.to_numeric(old["threshold"], errors="coerce").dropna().unique()
        if len(seen) and not all(math.isclose(float(v), thr, rel_tol=1e-9) for v in seen):
            raise ValueError(f"{per_image} was written with match threshold {seen[0]:.6g}, this audit's is {thr:.6g}: "
                             "it comes from a different audit (data, n, fmr or seed); choose another --out or drop "
                             "--resume")
    complete = set()
    for image_id, part in old.groupby("image_id", sort=False):
        got = set(zip(part["model"], part["degradation"], part["strength"].astype(float), strict=True))
        if got == wanted and len(part) == len(wanted):
            complete.add(str(image_id))
    return old[old["image_id"].isin(complete)].to_dict("records"), complete


def _in_data_order(per_image: Path, order: Mapping[str, int]) -> None:
    """Rewrite ``per_image.csv`` with the images in data order (each image's rows keep their order).

    Engines append rows as images finish; the file (and the report's bootstraps, which resample rows in file
    order) must not depend on which worker finished first.
    """
    with per_image.open(newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        rows = list(reader)
    col = header.index("image_id")
    rows.sort(key=lambda r: order.get(r[col], len(order)))  # stable: an image's rows stay in setting order
    tmp = per_image.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    tmp.replace(per_image)


def run_audit(config: AuditConfig, progress: ProgressFn | None = None, *, engine: Engine | None = None,
              resume: bool = False, batch_size: int = 16) -> AuditResult:
    """Run a full audit: clean pass, calibration, per-image pass (rows appended as they finish), report.

    Args:
        config: the run's settings.
        progress: called as ``progress(stage, done, total)`` with stage ``"clean"`` or ``"audit"`` (drive a
            tqdm bar or ``gr.Progress`` with it).
        engine: where the per-image step runs (default: :class:`SequentialEngine`; see
            :func:`audit.parallel.make_engine`). The caller closes an engine it passes. Every engine gives the
            same rows.
        resume: keep the rows of images that are complete in an existing ``per_image.csv`` of ``config.out``
            and audit only the others; the report is then built from all rows.
        batch_size: faces per batch (restorers and the embedder run batched).

    Returns:
        An :class:`AuditResult` (paths, threshold, counts).
    """
    config.validate()
    start = time.perf_counter()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    per_image = out / "per_image.csv"
    if resume and not per_image.is_file():
        raise FileNotFoundError(f"--resume: {per_image} does not exist; run without --resume to start the audit")
    # Resolved here too: unknown names and unreachable external restorers fail before any work.
    restorers = resolve_restorers(config.models, list(config.degradations), config.external,
                                  config.external_concurrency)
    wanted = expected_settings(restorers, config.degradations)
    close_restorers(restorers)
    step = AuditStep.from_config(config, batch_size)
    own = engine is None
    engine = engine or SequentialEngine()
    meta, items, total = face_source(config.data, labels=config.labels, fmt=config.format, n=config.n)
    progress = progress or (lambda stage, done, total: None)
    try:
        skipped = list(meta["skipped"])
        order: dict[str, int] = {}

        if config.identity and config.identity not in meta["group_columns"]:
            raise ValueError(f"identity column {config.identity!r} is not in the labels; columns: "
                             f"{meta['group_columns']}")
        identities: dict[str, str] = {}

        def readable():
            for k, (image_id, image, labels, reason) in enumerate(items):
                if config.identity:  # who the person is: used for pairs and rank-1, never as a group
                    labels = dict(labels)
                    identities[image_id] = labels.pop(config.identity)
                if reason is not None:
                    skipped.append({"id": image_id, "path": "", "reason": reason})
                    progress("clean", k + 1, total)
                else:
                    order[image_id] = k
                    yield image_id, image, labels

        cleans = []
        for clean in engine.clean(step, readable()):
            cleans.append(clean)
            progress("clean", len(cleans) + len(skipped) - len(meta["skipped"]), total)
        cleans.sort(key=lambda c: order[c.image_id])  # data order: the calibration samples pairs by position
        with_face = [c for c in cleans if c.embedding is not None]
        gallery = Gallery.build([c.image_id for c in with_face], [c.embedding for c in with_face], config.fmr,
                                config.seed, embedder_key=config.embedder,
                                identities=[identities[c.image_id] for c in with_face] if config.identity else None)
        if gallery.threshold is not None and gallery.threshold.note:
            print(f"warning: {gallery.threshold.note}", file=sys.stderr)

        group_columns = [c for c in meta["group_columns"] if c != config.identity] + list(config.predict)
        fields = list(ROW_FIELDS) + [c for c in group_columns if c not in ROW_FIELDS]
        kept, done_ids = ([], set())
        if resume:
            kept, done_ids = _resume_rows(per_image, fields, wanted, gallery.threshold)
        todo = [c for c in cleans if c.image_id not in done_ids]
        (out / "run.json").unlink(missing_ok=True)  # written last: its absence marks an unfinished audit
        with per_image.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(kept)
            fh.flush()
            progress("audit", len(done_ids), len(cleans))
            embedder_names = {str(r["embedder"]) for r in kept}
            for k, rows in enumerate(engine.audit(step, todo)):
                embedder_names.update(str(r["embedder"]) for r in rows)
                writer.writerows(finish_rows(rows, gallery))
                fh.flush()  # rows of finished images are on disk even if a later image crashes the run
                progress("audit", len(done_ids) + k + 1, len(cleans))
        _in_data_order(per_image, order)
    finally:
        if own:
            engine.close()

    faces_csv = out / "faces.csv"
    with faces_csv.open("w", newline="") as fh:
        info_keys = sorted({key for c in cleans for key in c.info})
        writer = csv.DictWriter(fh, fieldnames=["image_id", "has_face", *group_columns, *info_keys],
                                extrasaction="ignore")
        writer.writeheader()
        for c in cleans:
            writer.writerow({"image_id": c.image_id, "has_face": c.embedding is not None, **c.groups, **c.info})
    skipped_csv = out / "skipped.csv"
    if skipped:
        with skipped_csv.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=["id", "path", "reason"], extrasaction="ignore")
            writer.writeheader()
            writer.writerows(skipped)

    run_info = {"config": {k: (dict(v) if isinstance(v, Mapping) else list(v) if isinstance(v, tuple) else v)
                           for k, v in asdict(config).items()},
                "embedder": ", ".join(sorted(embedder_names)),
                "threshold": asdict(gallery.threshold) if gallery.threshold else None,
                "n_images": len(cleans), "n_no_face_clean": len(cleans) - len(with_face), "n_skipped": len(skipped),
                "source": meta["source"], "notes": meta["notes"],
                "label_source": {c: ("label" if c in meta["group_columns"] else "prediction") for c in group_columns}}
    files = report.write_report(out, per_image, run_info, config, cleans=cleans)
    files += [faces_csv, *([skipped_csv] if skipped else [])]  # listed by the CLI, offered by the app
    return AuditResult(out, per_image, out / "groups.csv", gallery.threshold, len(cleans),
                       len(cleans) - len(with_face), skipped, files, time.perf_counter() - start,
                       status_counts=count_statuses(per_image), n_resumed=len(done_ids), engine=engine.name)
