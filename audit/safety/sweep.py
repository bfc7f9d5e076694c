"""The one-face sweep: restorer policy, the sweep over strengths, and the recommendation rule."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from audit.engine import Gallery
from audit.safety.attackers import (
    SLOW_RESTORERS,
    GalleryFaces,
    attack_context,
    default_attackers,
    default_restorers,
)
from audit.safety.obscure import KINDS, check_kind, obscure
from audit.stats import Threshold
from deblur.degrade import NOISE_SIGMA, as_image, quantize
from deblur.embed import PUBLISHED_THRESHOLDS, Embedder, get_embedder
from deblur.faces import haar_has_face
from deblur.io import encode_png
from deblur.strengths import SAFETY_GRID, STRENGTHS, check_strength

__all__ = ["LOWER_BOUND_NOTE", "SLOW_RESTORERS", "STRENGTH_LABELS", "Recommendation",
           "SweepResult", "default_restorers", "recommend", "resolve_grid", "sweep_face"]


TABLE_COLUMNS = ["degradation", "strength", "attacker", "restorer", "label", "family", "uses_strength", "told_strength",
                 "estimated_kind", "distance", "threshold", "margin", "rank1", "reidentified", "status", "embedder",
                 "second_view"]
STRENGTH_LABELS = {"fill": "fill (no strength)", "pixelate_noise": "block size (px), noise σ per block"}
LOWER_BOUND_NOTE = (
    "This is a **lower bound on risk**, not a guarantee. It only tries *our* attackers (our restorers and "
    "classical deconvolution told the true kernel, the parrot, a blind kernel guess, a small network trained "
    "for minutes on a CPU) and judges identity with *one* embedder (dlib). Stronger restorers exist — GFPGAN, "
    "CodeFormer, PULSE-style generative search over a face prior — and a real attacker may have a better face "
    "matcher, a recogniser trained on millions of obscured faces and a gallery that contains the person. "
    "**\u201cSafe here\u201d does not mean safe.** Only non-invertible obscuring (solid fill, or "
    "pixelation plus strong noise) removes the information rather than hiding it."
)

ProgressFn = Callable[[float, str], None]


def _check_strengths(kind: str, strengths: Sequence[float]) -> tuple[float, ...]:
    values = list(strengths) if strengths is not None else []
    if not values:
        raise ValueError(f"the strength list of {kind!r} is empty; give at least one strength "
                         f"(e.g. {SAFETY_GRID[kind]})")
    if kind == "fill":
        return (1.0,)
    base = "pixelate" if kind == "pixelate_noise" else kind
    return tuple(sorted({check_strength(base, s) for s in values}))



# ----------------------------------------------------------------------------------------------------------------
# Restorers


# ----------------------------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class Recommendation:
    """The recommended strength of one obscuring kind.

    Attributes:
        degradation: the kind.
        strength: smallest tested strength from which no attacker re-identifies (at it or any larger tested
            strength); ``None`` when none qualifies.
        first_safe: smallest tested strength that is safe on its own (differs from ``strength`` when a
            restorer re-identifies again at a larger strength); ``None`` if none is.
        tested_max: the largest tested strength.
        margin: margin added to the threshold.
        threshold: the calibrated match threshold (L2).
        holdout: ``"attacker: variant"`` that wins at the last unsafe strength (the one furthest inside its
            threshold), or the closest attacker at ``strength`` when every strength is safe.
        explanation: one sentence for people.
    """

    degradation: str
    strength: float | None
    first_safe: float | None
    tested_max: float
    margin: float
    threshold: float
    holdout: str
    explanation: str


def _fmt(x: float) -> str:
    return f"{x:g}"


def recommend(table: pd.DataFrame, margin: float = 0.0) -> dict[str, Recommendation]:
    """Recommended strength per kind from a sweep table (pure: recompute it for any margin without embedding).

    Args:
        table: rows with ``degradation, strength, restorer, distance, threshold, rank1``.
        margin: distance margin above the threshold a restorer must stay beyond (>= 0).

    Raises:
        ValueError: for a negative or non-finite margin.
    """
    if not (math.isfinite(margin) and margin >= 0):
        raise ValueError(f"margin must be a finite number >= 0, got {margin}")
    out: dict[str, Recommendation] = {}
    for kind, g in table.groupby("degradation", sort=False):
        threshold = float(g["threshold"].iloc[0])
        reid = _reidentified(g, margin)
        by_strength = reid.groupby(g["strength"]).any().sort_index()
        strengths = by_strength.index.to_numpy(float)
        unsafe = by_strength.to_numpy(bool)
        first_safe = float(strengths[~unsafe][0]) if (~unsafe).any() else None
        last_unsafe = float(strengths[unsafe][-1]) if unsafe.any() else None
        later = strengths[strengths > last_unsafe] if last_unsafe is not None else strengths
        rec = float(later[0]) if later.size else None
        look = rec if rec is not None else last_unsafe
        at = g[g["strength"] == look].assign(_gap=lambda t: (t["distance"].astype(float) - t["threshold"].astype(float))
                                             .fillna(np.inf))
        hits = at[_reidentified(at, margin)]
        closest = (hits if len(hits) else at).sort_values("_gap").iloc[0] if len(at) else None
        holdout = "" if closest is None else (f"{closest['attacker']}: {closest['restorer']}" if "attacker" in at
                                              else str(closest["restorer"]))
        d_hold = float(closest["distance"]) if closest is not None else math.nan
        threshold = float(closest["threshold"]) if closest is not None else threshold
        limit = threshold + margin
        name = STRENGTH_LABELS.get(kind) or STRENGTHS[kind].name
        if kind == "fill":
            explanation = ("Solid fill defeats every attacker." if rec is not None else
                           f"Even solid fill was re-identified by {holdout} (distance {d_hold:.2f} ≤ {limit:.2f} "
                           "or rank-1): the gallery or threshold is degenerate; check the data.")
        elif rec is None:
            explanation = (f"No tested {name} up to {_fmt(strengths[-1])} is safe: at {_fmt(last_unsafe)}, "
                           f"{holdout} still re-identifies (distance {d_hold:.2f} vs threshold+margin {limit:.2f}, "
                           "or rank-1 hit). Use a stronger setting or a non-invertible obscuring (solid fill).")
        else:
            explanation = (f"{name} ≥ {_fmt(rec)}: no attacker re-identifies (closest: {holdout}, "
                           f"distance {d_hold:.2f} > {limit:.2f}, not rank-1).")
            if first_safe is not None and first_safe < rec:
                explanation += (f" {_fmt(first_safe)} looked safe, but an attacker re-identified again at "
                                f"{_fmt(last_unsafe)}.")
        out[str(kind)] = Recommendation(str(kind), rec, first_safe, float(strengths[-1]), float(margin), threshold,
                                        holdout, explanation)
    return out


@dataclass
class SweepResult:
    """Everything :func:`sweep_face` measured on one face.

    Attributes:
        table: tidy rows: ``degradation, strength, restorer, label, family, uses_strength, told_strength,
            distance, threshold, margin, rank1, reidentified, status, embedder``.
        recommendations: kind → :class:`Recommendation` at :attr:`margin`.
        threshold: the calibrated threshold (with its false-match rate).
        margin: the margin the recommendations use.
        original: the clean face crop.
        embedder: embedder name.
        excluded: restorers left out of the sweep (for speed).
        seconds: wall time of the sweep.
        n_embeddings: embeddings computed (identical images are embedded once).
        settings: seed, noise and fill colour of the non-invertible kinds.
    """

    table: pd.DataFrame
    recommendations: dict[str, Recommendation]
    threshold: Threshold
    margin: float
    original: np.ndarray
    embedder: str
    excluded: tuple[str, ...] = ()
    seconds: float = 0.0
    n_embeddings: int = 0
    settings: dict = field(default_factory=dict)

    def with_margin(self, margin: float) -> SweepResult:
        """The same measurements judged with another margin (no re-embedding)."""
        table = self.table.copy()
        table["margin"] = float(margin)
        table["reidentified"] = _reidentified(table, margin)
        return replace(self, table=table, recommendations=recommend(table, margin), margin=float(margin))

    def obscured(self, kind: str) -> np.ndarray | None:
        """The face obscured with ``kind`` at its recommended strength (8-bit), or ``None`` if none is safe."""
        rec = self.recommendations.get(kind)
        if rec is None or rec.strength is None:
            return None
        return obscure(self.original, kind, rec.strength, seed=self.settings.get("seed", 0),
                       noise=self.settings.get("noise", NOISE_SIGMA), fill=self.settings.get("fill", "mean"))

    def png(self, kind: str) -> bytes | None:
        """:meth:`obscured` as metadata-free PNG bytes (no EXIF, no text chunks), or ``None``."""
        img = self.obscured(kind)
        return None if img is None else encode_png(img)

    def summary(self) -> pd.DataFrame:
        """One row per kind: recommended strength, first safe strength, tested range and explanation."""
        rows = []
        for kind, rec in self.recommendations.items():
            rows.append({"degradation": kind, "strength_unit": STRENGTH_LABELS.get(kind) or STRENGTHS[kind].name,
                         "recommended": rec.strength, "first_safe": rec.first_safe, "tested_max": rec.tested_max,
                         "threshold": rec.threshold, "margin": rec.margin, "holdout": rec.holdout,
                         "explanation": rec.explanation})
        return pd.DataFrame(rows)


def _reidentified(table: pd.DataFrame, margin: float) -> pd.Series:
    close = (table["distance"].astype(float) <= table["threshold"].astype(float) + margin).fillna(False)
    return (close | table["rank1"].astype(bool)).astype(bool)


def threshold_only_gallery(embedder_key: str, original: np.ndarray, own_id: str = "query") -> Gallery:
    """A gallery holding only the query, judged at the embedder's published threshold (no rank-1)."""
    published = PUBLISHED_THRESHOLDS.get(embedder_key)
    if published is None:
        raise ValueError(f"the {embedder_key} embedder has no published match threshold: pass a gallery of faces "
                         "like this one (e.g. --gallery FOLDER of photos of other people)")
    original = np.asarray(original, float)
    threshold = Threshold(published.distance, math.nan, math.nan, 0, math.nan, source=published.source,
                          note="no gallery: threshold only")
    return Gallery([own_id], original[None], original.copy(), threshold)


def resolve_grid(degradations: Sequence[str], strengths: Mapping[str, Sequence[float]] | None) -> dict:
    kinds = list(degradations)
    if not kinds:
        raise ValueError(f"no degradation to sweep; choose from {list(KINDS)}")
    for kind in kinds:
        check_kind(kind)
    strengths = dict(strengths or {})
    unknown = [k for k in strengths if k not in kinds]
    if unknown:
        raise ValueError(f"strengths given for {unknown}, which are not among the degradations {kinds}")
    return {k: _check_strengths(k, strengths.get(k, SAFETY_GRID[k])) for k in kinds}


def sweep_face(clean_crop: np.ndarray, *, gallery: Gallery | None = None, embedder: Embedder | None = None,
               degradations: Sequence[str] = KINDS, strengths: Mapping[str, Sequence[float]] | None = None,
               restorers: Mapping[str, Mapping[str, object]] | None = None, attackers: Sequence | None = None,
               references: Sequence[np.ndarray] = (), candidates=None, margin: float = 0.0, own_id: str = "query",
               thorough: bool = False, seed: int = 0, noise: float = NOISE_SIGMA, fill: str = "mean",
               require_face: bool = True, progress: ProgressFn | None = None,
               extra_restorers: Mapping[str, Mapping[str, object]] | None = None) -> SweepResult:
    """Sweep obscuring strengths on one face and find, per kind, the strength no attacker beats.

    Every attacker (:mod:`audit.safety.attackers`: restore-then-match, parrot, unknown kernel, learned) tries
    every obscured version; the person is in each attacker's gallery through a *different* photo
    (``references``, or a re-captured second view of ``clean_crop`` as a proxy).

    Args:
        clean_crop: aligned face crop (e.g. 128×128 from :func:`deblur.faces.face_crop`).
        gallery: faces *of the same kind as the query* the attackers match against (a user's folder of real
            photos, FairFace; :func:`builtin_gallery` only for built-in faces); the person's second view is added
            under ``own_id``, and its threshold is the clean match threshold. ``None``: no such gallery -- a real
            face among generated ones is always nearest its own original, so rank-1 would be trivially true. The
            verdict is then the threshold alone (the embedder's published one,
            :data:`deblur.embed.PUBLISHED_THRESHOLDS`), rank-1 is not measured, the parrot and the learned
            attacker (which need candidates like the person) do not run, and ``settings["gallery"]`` says why.
        embedder: identity judge (default: dlib).
        degradations: kinds to sweep, from :data:`KINDS`.
        strengths: kind → strengths (default :data:`deblur.strengths.SAFETY_GRID`), pixels of the crop.
        restorers: kind → {name → restorer} of the restore attacker; default :func:`default_restorers` (every
            learned and classical restorer; Richardson–Lucy only with ``thorough``), told the true strength.
        attackers: the attackers (default :func:`default_attackers`: all four).
        references: other photos of the person (clean crops); without them a re-captured view stands in.
        candidates: candidates' clean photos for the parrot and the learned attacker's calibration, a
            :class:`audit.safety.GalleryFaces` (default :func:`audit.safety.context.builtin_candidates`; only
            those whose ids are in ``gallery`` are used). Too few to calibrate the false-match rate: those two
            attackers' rows say "not run" and why.
        margin: distance margin above the threshold (>= 0).
        own_id: the person's id in the gallery.
        thorough: include :data:`SLOW_RESTORERS`.
        seed: seed of the ``pixelate_noise`` noise and of the re-capture.
        noise: noise std of ``pixelate_noise``.
        fill: ``"mean"`` or ``"black"``.
        require_face: the crop must pass OpenCV's frontal-face Haar cascade, as the audit requires (the dlib
            embedder on a whole crop embeds anything, faces or not). Pass ``False`` when a detector already
            found the face (the app's MTCNN crop).
        extra_restorers: degradation → {name → restorer} added to the default ones (external restorers:
            :func:`deblur.restore.external_restorers`).
        progress: called as ``progress(fraction, message)``.

    Returns:
        A :class:`SweepResult` (one table row per kind × strength × attacker × variant).

    Raises:
        ValueError: unknown degradation, empty or invalid strengths, negative margin, or a crop without a face.
    """
    start = time.perf_counter()
    if not (math.isfinite(margin) and margin >= 0):
        raise ValueError(f"margin must be a finite number >= 0, got {margin}")
    grid = resolve_grid(degradations, strengths)
    clean = quantize(as_image(clean_crop, name="face crop"))
    if require_face:
        if not haar_has_face(clean):
            raise ValueError("no face found in this crop by the frontal-face detector; pass an aligned frontal face "
                             "crop (deblur.faces.face_crop) or require_face=False if you know it is one")
    embedder = embedder or get_embedder("dlib")
    original = embedder.embed(clean)
    if original is None:
        raise ValueError("the embedder finds no face in this crop; use a frontal face crop (deblur.faces.face_crop)")
    rank1_measured = gallery is not None
    if gallery is None:
        base = threshold_only_gallery(embedder.key, original, own_id)
        gallery_note = ("no gallery of faces like this one: judged by the threshold alone "
                        f"({base.threshold.source}); rank-1 is not measured and the parrot and the learned "
                        "attacker do not run (they need candidates like this face)")
        candidates = GalleryFaces((), np.zeros((0, 128, 128, 3), np.uint8))
    else:
        base = gallery
        gallery_note = f"gallery of {len(gallery.ids)} faces; rank-1 re-identification measured against it"
    if base.threshold is None:
        raise ValueError("the gallery has no calibrated threshold: build it from at least 2 faces")
    fmr = base.threshold.fmr_target if math.isfinite(base.threshold.fmr_target) else 0.01
    ctx = attack_context(clean, embedder=embedder, gallery=base, candidates=candidates, references=references,
                         seed=seed, noise=noise, fill=fill, fmr=fmr, own_id=own_id, rank1=rank1_measured)
    if ctx is None:
        raise ValueError("the embedder finds no face in the person's second view; pass another photo of the "
                         "person as a reference")
    if attackers is None:
        plan = (default_restorers(list(grid), thorough, extra_restorers) if restorers is None else
                {k: {n: (r, None) for n, r in restorers.get(k, {}).items()} for k in grid})
        attackers = default_attackers(list(grid), plan=plan)
    total = len(grid) * max(1, len(attackers))
    done = 0
    rows: list[dict] = []
    for kind, values in grid.items():
        degraded = [obscure(clean, kind, s, seed=seed, noise=noise, fill=fill) for s in values]
        for attacker in attackers:
            rows += [{"attacker": attacker.name, **r} for r in attacker.attack(kind, values, degraded, ctx)]
            done += 1
            if progress is not None:
                progress(done / total, f"{kind}: {attacker.name}")
    table = pd.DataFrame(rows)
    table["margin"] = float(margin)
    table["reidentified"] = _reidentified(table, margin)
    table["embedder"] = embedder.name
    table["second_view"] = ctx.second_view
    table = table.reindex(columns=TABLE_COLUMNS)
    excluded = () if thorough or restorers is not None else SLOW_RESTORERS
    return SweepResult(table, recommend(table, margin), base.threshold, float(margin), clean, embedder.name, excluded,
                       time.perf_counter() - start, len(ctx.embed.cache),
                       {"seed": seed, "noise": noise, "fill": fill, "second_view": ctx.second_view,
                        "attackers": [a.name for a in attackers],
                        # only the parrot and the learned attacker load the candidates (cached_property)
                        "candidates": len(ctx.__dict__["candidates"].ids) if "candidates" in ctx.__dict__ else 0,
                        "gallery_size": len(ctx.gallery.ids), "gallery": gallery_note,
                        "rank1_measured": rank1_measured})
