"""The audit engine: a pure per-image step and the driver that runs it over a data set.

Two passes:

1. *Clean pass* (:func:`prepare_face`): load each image, crop the face, embed it, and form its groups
   (dataset labels and/or predictions). The clean embeddings become the **gallery** used for the match
   threshold (calibrated on impostor pairs at a fixed false-match rate) and for rank-1 re-identification.
2. *Per-image pass* (:func:`audit_image`): for every degradation × strength × restorer, degrade, restore,
   embed and measure. :func:`audit_image` is a pure function of its arguments (no globals, no files),
   so a distributed engine can map it over images: see ``docs/AUDIT.md`` for a Ray sketch.

:func:`run_audit` ties both passes together, appends each image's rows to ``per_image.csv`` as soon as
they are computed (a crash or Ctrl-C keeps every finished image), then writes the group report.
"""

from __future__ import annotations

import csv
import math
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from audit import report
from audit.config import ROW_FIELDS, AuditConfig
from audit.data import face_source
from audit.groups import PREDICTED_ATTRIBUTES, predict_groups, skin_tone
from audit.stats import Threshold, calibrate_threshold
from deblur.degrade import as_image, degrade, quantize
from deblur.embed import PUBLISHED_THRESHOLDS, Embedder, centred_cosine, get_embedder, l2_distance
from deblur.faces import CROP_SIZE, NoFaceError, face_crop, haar_has_face
from deblur.metrics import psnr, ssim
from deblur.restore import close_restorers, external_restorers, parse_external, restore_outcomes

# AuditConfig and ROW_FIELDS live in audit.config; re-exported for existing callers.
__all__ = ["ROW_FIELDS", "AuditConfig", "AuditResult", "CleanFace", "Gallery", "audit_image",
           "count_statuses", "prepare_face", "resolve_restorers", "run_audit"]


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


@dataclass
class CleanFace:
    """One clean face after the first pass.

    Attributes:
        image_id: id of the image.
        image: ``128x128x3`` face crop (or ``None`` if no face was found).
        embedding: clean embedding (``None``: no face; its rows get status ``no_face_clean``).
        landmarks: five dlib landmarks of the crop, if known (for the skin region).
        groups: group column → group value (labels and predictions).
        info: supporting values (predicted age, ITA, skin L*, why skin was unusable...).
    """

    image_id: str
    image: np.ndarray | None
    embedding: np.ndarray | None
    landmarks: np.ndarray | None
    groups: dict[str, str]
    info: dict = field(default_factory=dict)


def _crop_mode(config) -> str:
    """``"auto"`` is ``"whole"`` for the built-in set (already aligned crops) and ``"detect"`` for photos."""
    if config.crop != "auto":
        return config.crop
    return "whole" if config.data == "builtin" else "detect"


def to_crop(img: np.ndarray, crop: str = "detect", size: int = CROP_SIZE) -> np.ndarray | None:
    """Face crop of a photo in facedrift's one crop geometry (:mod:`deblur.faces`).

    ``"detect"`` finds and aligns the largest face (MTCNN, then dlib's landmarks); ``"whole"`` means the
    image already *is* such a crop (the built-in set, or crops saved by facedrift) and is only resized.
    ``"auto"`` is ``"detect"`` here (the audit driver maps it to ``"whole"`` for the built-in set only):
    a square photo is not an aligned crop just because it is small.

    Returns:
        ``size x size x 3`` float32 crop, or ``None`` when no face is detected.
    """
    if crop not in ("auto", "whole", "detect"):
        raise ValueError(f"crop must be 'auto', 'whole' or 'detect', got {crop!r}")
    img = as_image(img)
    h, w = img.shape[:2]
    if crop == "whole":
        if (h, w) == (size, size):
            return img
        return np.clip(cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA if h > size else cv2.INTER_CUBIC),
                       0, 1).astype(np.float32)
    try:
        return face_crop(img, size).image
    except NoFaceError:
        return None


def prepare_face(img: np.ndarray | None, image_id: str, embedder: Embedder, *, labels: Mapping[str, str] | None = None,
                 predict: Sequence[str] = PREDICTED_ATTRIBUTES, crop: str = "auto",
                 require_detection: bool = True) -> CleanFace:
    """First pass for one image: crop, check there is a face, embed, and form its groups.

    Args:
        img: the photo or face crop (``None``: unreadable, treated as no face).
        image_id: its id.
        embedder: face embedder.
        labels: ground-truth group columns of this image (already strings).
        predict: predicted attributes to add (see :data:`audit.groups.PREDICTED_ATTRIBUTES`).
        crop: see :func:`to_crop`.
        require_detection: the clean crop must pass OpenCV's frontal-face Haar cascade (the study's filter);
            whole-crop embedders would otherwise embed a picture without a face.
    """
    groups = dict(labels or {})
    face = to_crop(img, crop) if img is not None else None
    if face is not None and require_detection and not haar_has_face(face):
        face = None
    if face is None:
        for attr in predict:
            groups.setdefault(attr, "no_face")
        return CleanFace(image_id, None, None, None, groups, {"reason": "no face in the clean image"})
    embedding = embedder.embed(face)
    landmarks = embedder.landmarks(face) if hasattr(embedder, "landmarks") else None
    info: dict = {}
    if predict:
        predicted = predict_groups(face, landmarks, predict)
        for attr in predict:
            groups[attr] = str(predicted.pop(attr))
        info.update(predicted)
    if embedding is None:
        info["reason"] = "the embedder found no face in the clean crop"
    return CleanFace(image_id, face, embedding, landmarks, groups, info)


def _restorer_meta(restorer) -> dict:
    return {"model": restorer.name, "model_family": getattr(restorer, "family", ""),
            "uses_strength": bool(getattr(restorer, "uses_strength", False))}


def audit_image(clean: CleanFace, *, restorers: Mapping[str, Mapping[str, object]],
                degradations: Mapping[str, Sequence[float]], embedder: Embedder, gallery: Gallery,
                skin_pixels: np.ndarray | None = None) -> list[dict]:
    """All measurements of one clean face: one row per degradation × strength × restorer.

    Pure: depends only on its arguments and writes nothing, so it can be mapped over images by any engine.

    Args:
        clean: the face from :func:`prepare_face` (its ``groups`` are copied into every row).
        restorers: degradation kind → {restorer name → restorer} (the ``Restorer`` protocol of
            ``docs/CONTRACTS.md``); restorers that do not handle a kind are simply absent for it.
        degradations: degradation kind → strengths (pixels of the crop).
        embedder: the embedder that made the gallery.
        gallery: clean gallery (threshold, centre, rank-1).
        skin_pixels: pixels for ITA (default: measured on the clean crop with its landmarks).

    Returns:
        Rows (dicts with :data:`ROW_FIELDS` plus the group columns). ``status`` is ``ok``,
        ``no_face_clean``, ``no_face_restored``, ``error:<reason>`` for a failed external call (reasons in
        :data:`deblur.restore.external.FAILURE_REASONS`, details in ``note``) or ``error:<Type>: <message>``; no case
        is dropped. ``note`` also says when an external output was resized back.
    """
    base = {"image_id": clean.image_id, "embedder": embedder.name,
            "threshold": gallery.threshold.distance if gallery.threshold else math.nan, **clean.groups}
    rows: list[dict] = []
    if clean.embedding is None or clean.image is None:
        for kind, strengths in degradations.items():
            for strength in strengths:
                for restorer in restorers.get(kind, {}).values():
                    rows.append({**base, **_restorer_meta(restorer), "degradation": kind, "strength": float(strength),
                                 "status": "no_face_clean"})
        return rows
    centre = gallery.centre
    tone = skin_tone(clean.image, clean.landmarks, pixels=skin_pixels)
    settings = []  # (kind, strength, degraded, its embedding, its fields)
    for kind, strengths in degradations.items():
        for strength in strengths:
            degraded = quantize(degrade(clean.image, kind, strength))
            emb_deg = embedder.embed(degraded)
            d_deg = l2_distance(emb_deg, clean.embedding) if emb_deg is not None else math.nan
            settings.append((kind, float(strength), degraded, emb_deg, {
                "dist_degraded_clean": d_deg,
                "sim_degraded_clean": centred_cosine(emb_deg, clean.embedding, centre) if emb_deg is not None
                else math.nan,
                "match_degraded": gallery.matches(d_deg) if gallery.threshold else None,
                "rank1_degraded": gallery.rank1(emb_deg, clean.image_id),
                "psnr_degraded": psnr(degraded, clean.image), "ssim_degraded": ssim(degraded, clean.image),
            }))
    # All settings of one restorer in one call: external restorers run them concurrently.
    outcomes = {}
    for kind in degradations:
        for name, restorer in restorers.get(kind, {}).items():
            idx = [i for i, s in enumerate(settings) if s[0] == kind]
            given = [s[1] if getattr(restorer, "uses_strength", False) else None for s in (settings[i] for i in idx)]
            found = restore_outcomes(restorer, [settings[i][2] for i in idx], given)
            outcomes.update({(i, name): o for i, o in zip(idx, found, strict=True)})
    for i, (kind, strength, degraded, emb_deg, deg_fields) in enumerate(settings):
        for name, restorer in restorers.get(kind, {}).items():
            row = {**base, **_restorer_meta(restorer), "degradation": kind, "strength": strength, **deg_fields}
            outcome = outcomes[(i, name)]
            start = time.perf_counter()
            row["status"], row["note"] = outcome.status, outcome.note
            if outcome.ok:
                try:
                    same = np.array_equal(outcome.image, degraded)  # "none": reuse the degraded embedding
                    emb = emb_deg if same else embedder.embed(outcome.image)
                    row.update(_restored_fields(outcome.image, emb, emb_deg, clean, gallery, tone))
                except Exception as exc:  # noqa: BLE001 - one failing measurement must not stop the audit
                    row["status"] = f"error:{type(exc).__name__}: {exc}"[:300]
            row["seconds"] = outcome.seconds + time.perf_counter() - start
            rows.append(row)
    return rows


def _restored_fields(restored, emb, emb_deg, clean: CleanFace, gallery: Gallery, tone) -> dict:
    out = {"psnr_restored": psnr(restored, clean.image), "ssim_restored": ssim(restored, clean.image),
           "face_detected_restored": haar_has_face(restored)}
    restored_tone = skin_tone(restored, pixels=tone.pixels) if tone.n_pixels else None
    if restored_tone is not None and np.isfinite(tone.ita):
        out.update({"ita_clean": tone.ita, "ita_restored": restored_tone.ita,
                    "delta_ita": restored_tone.ita - tone.ita, "lightness_clean": tone.lightness,
                    "delta_lightness": restored_tone.lightness - tone.lightness})
    if emb is None:
        out.update({"status": "no_face_restored", "match_restored": False if gallery.threshold else None,
                    "rank1_restored": False})
        return out
    d = l2_distance(emb, clean.embedding)
    out.update({
        "status": "ok", "dist_restored_clean": d,
        "sim_restored_clean": centred_cosine(emb, clean.embedding, gallery.centre),
        "dist_restored_degraded": l2_distance(emb, emb_deg) if emb_deg is not None else math.nan,
        "drift": d - l2_distance(emb_deg, clean.embedding) if emb_deg is not None else math.nan,
        "match_restored": gallery.matches(d) if gallery.threshold else None,
        "rank1_restored": gallery.rank1(emb, clean.image_id),
    })
    return out


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
    status_counts: dict = field(default_factory=dict)  # model -> {status kind -> rows}, e.g. "error:timeout"


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


def run_audit(config: AuditConfig, progress: ProgressFn | None = None) -> AuditResult:
    """Run a full audit: clean pass, calibration, per-image pass (rows appended as they finish), report.

    Args:
        config: the run's settings.
        progress: called as ``progress(stage, done, total)`` with stage ``"clean"`` or ``"audit"`` (drive a
            tqdm bar or ``gr.Progress`` with it).

    Returns:
        An :class:`AuditResult` (paths, threshold, counts).
    """
    config.validate()
    start = time.perf_counter()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    restorers = resolve_restorers(config.models, list(config.degradations), config.external,
                                  config.external_concurrency)
    try:
        return _run(config, restorers, progress, start, out)
    finally:
        close_restorers(restorers)


def _run(config: AuditConfig, restorers, progress: ProgressFn | None, start: float, out: Path) -> AuditResult:
    embedder = get_embedder(config.embedder)
    meta, items, total = face_source(config.data, labels=config.labels, fmt=config.format, n=config.n)
    progress = progress or (lambda stage, done, total: None)

    cleans: list[CleanFace] = []
    skipped = list(meta["skipped"])
    if config.identity and config.identity not in meta["group_columns"]:
        raise ValueError(f"identity column {config.identity!r} is not in the labels; columns: {meta['group_columns']}")
    identities: dict[str, str] = {}
    for k, (image_id, image, labels, reason) in enumerate(items):
        if config.identity:  # who the person is: used for pairs and rank-1, never as a group
            labels = dict(labels)
            identities[image_id] = labels.pop(config.identity)
        if reason is not None:
            skipped.append({"id": image_id, "path": "", "reason": reason})
        else:
            cleans.append(prepare_face(image, image_id, embedder, labels=labels, predict=config.predict,
                                       crop=_crop_mode(config)))
        progress("clean", k + 1, total)
    with_face = [c for c in cleans if c.embedding is not None]
    gallery = Gallery.build([c.image_id for c in with_face], [c.embedding for c in with_face], config.fmr, config.seed,
                            identities=[identities[c.image_id] for c in with_face] if config.identity else None,
                            embedder_key=config.embedder)
    if gallery.threshold is not None and gallery.threshold.note:
        print(f"warning: {gallery.threshold.note}", file=sys.stderr)

    group_columns = [c for c in meta["group_columns"] if c != config.identity] + list(config.predict)
    fields = list(ROW_FIELDS) + [c for c in group_columns if c not in ROW_FIELDS]
    per_image = out / "per_image.csv"
    with per_image.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        fh.flush()
        for k, clean in enumerate(cleans):
            try:
                rows = audit_image(clean, restorers=restorers, degradations=config.degradations, embedder=embedder,
                                   gallery=gallery)
            except Exception as exc:  # noqa: BLE001 - count and go on; the traceback goes in the row
                rows = [{"image_id": clean.image_id, "embedder": embedder.name, **clean.groups,
                         "status": f"error:{type(exc).__name__}: {exc}"[:300]}]
                traceback.print_exc()
            writer.writerows(rows)
            fh.flush()  # rows of finished images are on disk even if a later image crashes the run
            progress("audit", k + 1, len(cleans))

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
                "embedder": embedder.name, "threshold": asdict(gallery.threshold) if gallery.threshold else None,
                "n_images": len(cleans), "n_no_face_clean": len(cleans) - len(with_face), "n_skipped": len(skipped),
                "source": meta["source"], "notes": meta["notes"],
                "label_source": {c: ("label" if c in meta["group_columns"] else "prediction") for c in group_columns}}
    files = report.write_report(out, per_image, run_info, config, cleans=cleans)
    files += [faces_csv, *([skipped_csv] if skipped else [])]  # listed by the CLI, offered by the app
    result = AuditResult(out, per_image, out / "groups.csv", gallery.threshold, len(cleans),
                         len(cleans) - len(with_face), skipped, files, time.perf_counter() - start,
                         status_counts=count_statuses(per_image))
    return result
