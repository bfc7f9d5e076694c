"""The per-image step on a batch of faces, in two halves an engine can place on different workers.

1. :func:`restore_chunk` degrades every face at every setting and restores each setting's batch with every
   restorer (the part a GPU speeds up).
2. :func:`measure_chunk` embeds the degraded and restored faces (one batch call per setting and restorer) and
   measures everything that does not need the gallery.

:func:`finish_rows` adds the gallery's part (threshold, centred similarity, match, rank-1) where the gallery
lives, so workers never hold every clean embedding. All three are pure. Networks always run on batches of the
same size (:func:`fixed_batch`), so the rows are bit-identical whatever the engine, worker count or chunking.
"""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import cv2
import numpy as np

from audit.groups import skin_tone
from audit.prepare import CleanFace, crop_mode, prepare_face
from deblur.degrade import as_image, degrade, quantize
from deblur.embed import Embedder, centred_cosine, get_embedder, l2_distance
from deblur.faces import haar_has_face
from deblur.metrics import psnr, ssim
from deblur.restore import RestoreOutcome, close_restorers, external_restorers, parse_external, restore_outcomes

if TYPE_CHECKING:  # type hints only: audit.engine imports this module
    from audit.config import AuditConfig
    from audit.engine import Gallery

# The clean pass (CleanFace, crop_mode, to_crop, prepare_face) is audit.prepare.
__all__ = ["AuditStep", "Setting", "StepRunner", "embed_fixed", "finish_rows", "fixed_batch", "measure_chunk",
           "resolve_restorers", "restore_chunk"]

Item = tuple[str, np.ndarray, Mapping[str, str]]  # image id, photo, labels


def restorer_meta(restorer) -> dict:
    """The row fields naming a restorer."""
    return {"model": restorer.name, "model_family": getattr(restorer, "family", ""),
            "uses_strength": bool(getattr(restorer, "uses_strength", False))}


@dataclass
class Setting:
    """One degradation × strength of one face: the degraded image and each restorer's outcome.

    Attributes:
        kind, strength: the degradation.
        degraded: the degraded (8-bit quantised) face.
        outcomes: restorer name → its :class:`deblur.restore.RestoreOutcome` (image, or failure status and note;
            ``seconds`` is the batch's time shared by its images).
    """

    kind: str
    strength: float
    degraded: np.ndarray
    outcomes: dict[str, RestoreOutcome] = field(default_factory=dict)


def fixed_batch(fn, imgs: np.ndarray, size: int) -> np.ndarray:
    """``fn(imgs)`` on batches of exactly ``size`` images (the last one padded by repeating its last image).

    Why: a network's output for one image depends on the batch *size* it runs in (the 7th digit, through
    oneDNN's blocking) but not on the other images in it; fixed-size batches make every engine, chunking and
    worker count give bit-identical rows.
    """
    out = []
    for i in range(0, len(imgs), size):
        part = imgs[i:i + size]
        pad = size - len(part)
        batch = np.concatenate([part, np.repeat(part[-1:], pad, axis=0)]) if pad else part
        out.append(np.asarray(fn(batch))[:len(part)])
    return np.concatenate(out) if out else imgs[:0]


def restore_many(restorer, degraded: np.ndarray, strength: float, batch_size: int) -> list[RestoreOutcome]:
    """Outcomes of one restorer on a stack of images degraded at ``strength``.

    Restorers with a batch path (learned, classical, ``none``) run it on batches of exactly ``batch_size``; a
    batch that raises is redone image by image so each image gets its own status. External restorers use their own
    concurrent path (:func:`deblur.restore.restore_outcomes`).
    """
    given = float(strength) if getattr(restorer, "uses_strength", False) else None
    if hasattr(restorer, "restore_batch") and not hasattr(restorer, "restore_outcomes"):
        start = time.perf_counter()
        try:
            out = fixed_batch(lambda b: restorer.restore_batch(b, None if given is None else [given]), degraded,
                              batch_size)
            each = (time.perf_counter() - start) / max(len(degraded), 1)
            return [RestoreOutcome(as_image(x, name=f"output of {restorer.name}"), seconds=each) for x in out]
        except Exception:  # noqa: BLE001 - isolate the failing image(s) below; each gets its error in its row
            pass
    return restore_outcomes(restorer, list(degraded), [given] * len(degraded))


def restore_chunk(cleans: Sequence[CleanFace], restorers: Mapping[str, Mapping[str, object]],
                  degradations: Mapping[str, Sequence[float]], batch_size: int = 1) -> list[list[Setting]]:
    """Degrade every face of a chunk at every setting and restore each setting's batch with every restorer.

    The first half of the per-image step (the part a GPU speeds up). Faces without a clean face get no settings.
    Networks run on batches of exactly ``batch_size`` images (padded): the rows depend on ``batch_size`` (in the
    7th digit) but not on how an engine splits the faces.

    Returns:
        One list of :class:`Setting` per face, in the order of ``degradations`` × strengths.
    """
    faces = [k for k, c in enumerate(cleans) if c.embedding is not None and c.image is not None]
    out: list[list[Setting]] = [[] for _ in cleans]
    if not faces:
        return out
    for kind, strengths in degradations.items():
        for strength in strengths:
            settings = [Setting(kind, float(strength), quantize(degrade(cleans[k].image, kind, strength)))
                        for k in faces]
            stack = np.stack([s.degraded for s in settings])
            for name, restorer in restorers.get(kind, {}).items():
                for s, outcome in zip(settings, restore_many(restorer, stack, strength, batch_size), strict=True):
                    s.outcomes[name] = outcome
            for k, s in zip(faces, settings, strict=True):
                out[k].append(s)
    return out


def embed_fixed(embedder: Embedder, imgs: Sequence[np.ndarray], batch_size: int) -> list[np.ndarray | None]:
    """``embedder.embed_batch`` on batches of exactly ``batch_size`` images (padded, see :func:`fixed_batch`):
    dlib's batch descriptor call, and bit-identical embeddings from batch-size-dependent networks (facenet)."""
    out: list[np.ndarray | None] = []
    for i in range(0, len(imgs), batch_size):
        part = list(imgs[i:i + batch_size])
        out += list(embedder.embed_batch(part + [part[-1]] * (batch_size - len(part))))[:len(part)]
    return out


def measure_chunk(cleans: Sequence[CleanFace], settings: Sequence[Sequence[Setting]],
                  restorers: Mapping[str, Mapping[str, object]], degradations: Mapping[str, Sequence[float]],
                  embedder: Embedder, batch_size: int = 1) -> list[list[dict]]:
    """Embed and measure a chunk's degraded and restored faces: the second half of the per-image step.

    The rows carry everything that does not need the gallery; :func:`finish_rows` adds the rest (threshold,
    centred similarity, match, rank-1) where the gallery lives. All degraded faces of the chunk are embedded in
    batches of ``batch_size``, then all restored ones (a restorer that returns its input, like ``none``,
    reuses the degraded embedding).

    Returns:
        One list of rows per face (see :func:`audit_image`).
    """
    with_face = [k for k, c in enumerate(cleans) if c.embedding is not None and c.image is not None]
    degraded = [(k, j) for k in with_face for j in range(len(settings[k]))]
    start = time.perf_counter()
    emb_deg = dict(zip(degraded, embed_fixed(embedder, [settings[k][j].degraded for k, j in degraded], batch_size),
                       strict=True))
    fresh = [(k, j, name) for k, j in degraded for name, o in settings[k][j].outcomes.items()
             if o.ok and not np.array_equal(o.image, settings[k][j].degraded)]
    emb_out = dict(zip(fresh, embed_fixed(embedder, [settings[k][j].outcomes[n].image for k, j, n in fresh],
                                          batch_size), strict=True))
    embed_seconds = (time.perf_counter() - start) / max(len(degraded) + len(fresh), 1)  # per embedded image
    out: list[list[dict]] = []
    for k, clean in enumerate(cleans):
        base = {"image_id": clean.image_id, "embedder": embedder.name, **clean.groups}
        rows: list[dict] = []
        if k not in with_face:
            for kind, strengths in degradations.items():
                for strength in strengths:
                    for restorer in restorers.get(kind, {}).values():
                        rows.append({**base, **restorer_meta(restorer), "degradation": kind,
                                     "strength": float(strength), "status": "no_face_clean"})
            out.append(rows)
            continue
        tone = skin_tone(clean.image, clean.landmarks)
        for j, s in enumerate(settings[k]):
            e_deg = emb_deg[(k, j)]
            deg_fields = {
                "dist_degraded_clean": l2_distance(e_deg, clean.embedding) if e_deg is not None else math.nan,
                "psnr_degraded": psnr(s.degraded, clean.image), "ssim_degraded": ssim(s.degraded, clean.image),
                "_emb_degraded": e_deg,
            }
            for name, restorer in restorers.get(s.kind, {}).items():
                outcome = s.outcomes[name]
                own = (k, j, name) in emb_out
                row = {**base, **restorer_meta(restorer), "degradation": s.kind, "strength": s.strength,
                       **deg_fields, "status": outcome.status, "note": outcome.note,
                       "seconds": outcome.seconds + (embed_seconds if own else 0.0)}
                if outcome.ok:
                    emb = emb_out[(k, j, name)] if own else e_deg
                    row.update(_restored_fields(outcome.image, emb, e_deg, clean, tone))
                rows.append(row)
        out.append(rows)
    return out


def _restored_fields(restored, emb, emb_deg, clean: CleanFace, tone) -> dict:
    out = {"psnr_restored": psnr(restored, clean.image), "ssim_restored": ssim(restored, clean.image),
           "face_detected_restored": haar_has_face(restored), "_emb_restored": emb}
    restored_tone = skin_tone(restored, pixels=tone.pixels) if tone.n_pixels else None
    if restored_tone is not None and np.isfinite(tone.ita):
        out.update({"ita_clean": tone.ita, "ita_restored": restored_tone.ita,
                    "delta_ita": restored_tone.ita - tone.ita, "lightness_clean": tone.lightness,
                    "delta_lightness": restored_tone.lightness - tone.lightness})
    if emb is None:
        out.update({"status": "no_face_restored"})
        return out
    d = l2_distance(emb, clean.embedding)
    out.update({
        "status": "ok", "dist_restored_clean": d,
        "dist_restored_degraded": l2_distance(emb, emb_deg) if emb_deg is not None else math.nan,
        "drift": d - l2_distance(emb_deg, clean.embedding) if emb_deg is not None else math.nan,
    })
    return out


def finish_rows(rows: Sequence[dict], gallery: Gallery) -> list[dict]:
    """Add the gallery's part to rows from :func:`measure_chunk`: threshold, centred similarity, match, rank-1.

    Runs where the gallery is (the driver), so workers never need every clean embedding.
    """
    done = []
    for row in rows:
        row = dict(row)
        emb_deg, emb = row.pop("_emb_degraded", None), row.pop("_emb_restored", None)
        row["threshold"] = gallery.threshold.distance if gallery.threshold else math.nan
        if row.get("status") == "no_face_clean" or "dist_degraded_clean" not in row:
            done.append(row)
            continue
        own_id = row["image_id"]
        clean_emb = gallery.embedding_of(own_id)
        row["sim_degraded_clean"] = (centred_cosine(emb_deg, clean_emb, gallery.centre) if emb_deg is not None
                                     else math.nan)
        row["match_degraded"] = gallery.matches(row["dist_degraded_clean"]) if gallery.threshold else None
        row["rank1_degraded"] = gallery.rank1(emb_deg, own_id)
        if row.get("status") == "ok":
            row["sim_restored_clean"] = centred_cosine(emb, clean_emb, gallery.centre)
            row["match_restored"] = gallery.matches(row["dist_restored_clean"]) if gallery.threshold else None
            row["rank1_restored"] = gallery.rank1(emb, own_id)
        elif row.get("status") == "no_face_restored":
            row["match_restored"] = False if gallery.threshold else None
            row["rank1_restored"] = False
        done.append(row)
    return done


def resolve_restorers(models: Sequence[str] | None, kinds: Sequence[str], external: Sequence[str] = (),
                      external_concurrency: int | None = None) -> dict[str, dict[str, object]]:
    """Restorers per degradation kind: :func:`deblur.restore.restorers_for` (learned + classical + ``none``)
    plus the ``external`` specs (always included; imported / connected now).

    Raises:
        ValueError: if a requested model name is not available for any of ``kinds`` (lists the known ones),
            or an external spec is bad, unreachable or reuses a built-in name.
    """
    from deblur.restore import restorers_for  # imports torch (seconds): only when restorers are resolved

    available = {kind: restorers_for(kind) for kind in kinds}
    known = sorted({name for found in available.values() for name in found})
    outside = [parse_external(spec).name for spec in external]
    clash = sorted(set(outside) & set(known))
    if clash:
        raise ValueError(f"external restorer name(s) {clash} are taken by built-in restorers; pick other NAME=")
    if models is not None:
        unknown = [m for m in models if m not in known and m not in outside]
        if unknown:
            raise ValueError(f"unknown model(s) {unknown} for degradations {list(kinds)}; known: {known}")
        available = {kind: {m: found[m] for m in models if m in found} for kind, found in available.items()}
    for kind, found in external_restorers(external, kinds, concurrency=external_concurrency).items():
        available[kind].update(found)
    return available


@dataclass(frozen=True)
class AuditStep:
    """What a worker needs to run the per-image step: small and picklable; heavy parts load once per process.

    Attributes:
        embedder: embedder name; models: restorer names (``None``: all); degradations: ``((kind, strengths), ...)``;
        predict, crop, external, external_concurrency: see :class:`AuditConfig`;
        batch_size: faces per batch of the engines.
    """

    embedder: str
    models: tuple[str, ...] | None
    degradations: tuple[tuple[str, tuple[float, ...]], ...]
    predict: tuple[str, ...]
    crop: str
    batch_size: int = 16
    external: tuple[str, ...] = ()
    external_concurrency: int | None = None

    @classmethod
    def from_config(cls, config: AuditConfig, batch_size: int = 16) -> AuditStep:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        return cls(config.embedder, tuple(config.models) if config.models else None,
                   tuple((k, tuple(float(s) for s in v)) for k, v in config.degradations.items()),
                   tuple(config.predict), crop_mode(config), int(batch_size), tuple(config.external),
                   config.external_concurrency)


@contextmanager
def single_thread() -> Iterator[None]:
    """Run the step on one torch and one OpenCV thread, then restore the counts.

    Why: a network's output depends on the number of intra-op threads (oneDNN splits the work differently; 7th
    digit), so every engine runs each worker's step on one thread: the workers are the parallelism. In the app,
    a concurrent request's torch calls also run on one thread meanwhile (slower, same results).
    """
    import torch  # heavy: imported here, where the restorers need it anyway, not when this module is imported

    before = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before[0])
        cv2.setNumThreads(before[1])


class StepRunner:
    """An :class:`AuditStep` with its embedder and restorers loaded (once, on first use) in this process.

    Every batch runs on one thread (:func:`single_thread`), whatever the engine.
    """

    def __init__(self, step: AuditStep):
        self.step = step
        self.degradations = {k: v for k, v in step.degradations}
        self._embedder: Embedder | None = None
        self._restorers: dict | None = None

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = get_embedder(self.step.embedder)
        return self._embedder

    @property
    def restorers(self) -> dict:
        if self._restorers is None:
            self._restorers = resolve_restorers(self.step.models, list(self.degradations), self.step.external,
                                                self.step.external_concurrency)
        return self._restorers

    def close(self) -> None:
        """Close the external restorers' runners (threads, temporary folders)."""
        if self._restorers is not None:
            close_restorers(self._restorers)
            self._restorers = None

    def clean(self, items: Sequence[Item]) -> list[CleanFace]:
        """First pass of a batch of photos."""
        with single_thread():
            return [prepare_face(img, image_id, self.embedder, labels=labels, predict=self.step.predict,
                                 crop=self.step.crop) for image_id, img, labels in items]

    def restore(self, cleans: Sequence[CleanFace]) -> list[list[Setting]]:
        with single_thread():
            return restore_chunk(cleans, self.restorers, self.degradations, self.step.batch_size)

    def measure(self, cleans: Sequence[CleanFace], settings: Sequence[Sequence[Setting]]) -> list[list[dict]]:
        """Gallery-free rows (see :func:`measure_chunk`) of a batch, one list per face.

        A batch that raises is redone face by face; a face that still raises gets one ``error:`` row (with the
        traceback on stderr) and the audit goes on.
        """
        try:
            with single_thread():
                return measure_chunk(cleans, settings, self.restorers, self.degradations, self.embedder,
                                     self.step.batch_size)
        except Exception as exc:  # noqa: BLE001 - count and go on
            if len(cleans) > 1:
                return [rows for c, s in zip(cleans, settings, strict=True) for rows in self.measure([c], [s])]
            traceback.print_exc()
            c = cleans[0]
            return [[{"image_id": c.image_id, "embedder": self.embedder.name, **c.groups,
                      "status": f"error:{type(exc).__name__}: {exc}"[:300]}]]

    def audit(self, cleans: Sequence[CleanFace]) -> list[list[dict]]:
        """Both halves of the per-image step on a batch of clean faces, one list of rows per face."""
        return self.measure(cleans, self.restore(cleans))
