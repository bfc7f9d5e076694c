"""The one-face sweep: restorer policy, the sweep over strengths, and the recommendation rule."""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from audit.engine import Gallery
from audit.safety.gallery import with_query
from audit.safety.obscure import KINDS, check_kind, obscure
from audit.stats import Threshold
from deblur.degrade import DEGRADATIONS, NOISE_SIGMA, as_image, quantize, to_uint8
from deblur.embed import PUBLISHED_THRESHOLDS, Embedder, get_embedder, l2_distance
from deblur.faces import haar_has_face
from deblur.io import encode_png
from deblur.restore import restorers_for
from deblur.strengths import SAFETY_GRID, STRENGTHS, check_strength

__all__ = ["LOWER_BOUND_NOTE", "SLOW_RESTORERS", "STRENGTH_LABELS", "Recommendation",
           "SweepResult", "default_restorers", "recommend", "resolve_grid", "sweep_face"]


# Richardson–Lucy costs ~110 ms per image on top of its embedding and restored less identity than Wiener on
# our faces; the interactive sweep skips it (``thorough=True`` / ``--thorough`` puts it back).
SLOW_RESTORERS = ("richardson-lucy",)
STRENGTH_LABELS = {"fill": "fill (no strength)", "pixelate_noise": "block size (px), noise σ per block"}
LOWER_BOUND_NOTE = (
    "This is a **lower bound on risk**, not a guarantee. It only tries *our* restorers (classical "
    "deconvolution told the true kernel, our small learned models) and judges identity with *one* embedder "
    "(dlib). Stronger restorers exist — GFPGAN, CodeFormer, PULSE-style generative search over a face "
    "prior — and a real attacker may have a better face matcher and a gallery that contains the person. "
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


def default_restorers(kinds: Sequence[str], thorough: bool = False, extra: Mapping[str, Mapping] | None = None
                      ) -> dict[str, dict[str, tuple[object, float | None]]]:
    """Restorers per obscuring kind, each with the strength it is told (``None``: told the sweep's strength).

    ``pixelate_noise`` gets the pixelation restorers (told the true block size); ``fill`` gets every
    restorer of every degradation, each told that degradation's default strength (there is nothing to know).
    ``extra`` adds restorers per degradation (``{kind: {name: restorer}}``, e.g. external ones) to ours.
    """
    exclude = () if thorough else SLOW_RESTORERS
    extra = extra or {}
    out: dict[str, dict[str, tuple[object, float | None]]] = {}
    for kind in kinds:
        check_kind(kind)
        if kind == "fill":
            found = {}
            for base in DEGRADATIONS:
                for name, r in {**restorers_for(base), **extra.get(base, {})}.items():
                    if name in exclude:
                        continue
                    key = "none" if name == "none" else f"{name} ({base})"
                    found.setdefault(key, (r, float(STRENGTHS[base].default)))
            out[kind] = found
        else:
            base = "pixelate" if kind == "pixelate_noise" else kind
            out[kind] = {n: (r, None) for n, r in {**restorers_for(base), **extra.get(base, {})}.items()
                         if n not in exclude}
    return out


# ----------------------------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class Recommendation:
    """The recommended strength of one obscuring kind.

    Attributes:
        degradation: the kind.
        strength: smallest tested strength from which no restorer re-identifies (at it or any larger tested
            strength); ``None`` when none qualifies.
        first_safe: smallest tested strength that is safe on its own (differs from ``strength`` when a
            restorer re-identifies again at a larger strength); ``None`` if none is.
        tested_max: the largest tested strength.
        margin: margin added to the threshold.
        threshold: the calibrated match threshold (L2).
        holdout: the restorer closest to the original at the last unsafe strength (or at ``strength``).
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
        at = g[g["strength"] == look]
        closest = at.loc[at["distance"].astype(float).fillna(np.inf).idxmin()] if len(at) else None
        holdout = str(closest["restorer"]) if closest is not None else ""
        d_hold = float(closest["distance"]) if closest is not None else math.nan
        limit = threshold + margin
        name = STRENGTH_LABELS.get(kind) or STRENGTHS[kind].name
        if kind == "fill":
            explanation = ("Solid fill defeats every restorer." if rec is not None else
                           f"Even solid fill was re-identified by {holdout} (distance {d_hold:.2f} ≤ {limit:.2f} "
                           "or rank-1): the gallery or threshold is degenerate; check the data.")
        elif rec is None:
            explanation = (f"No tested {name} up to {_fmt(strengths[-1])} is safe: at {_fmt(last_unsafe)}, "
                           f"{holdout} still re-identifies (distance {d_hold:.2f} vs threshold+margin {limit:.2f}, "
                           "or rank-1 hit). Use a stronger setting or a non-invertible obscuring (solid fill).")
        else:
            explanation = (f"{name} ≥ {_fmt(rec)}: no restorer re-identifies (closest: {holdout}, "
                           f"distance {d_hold:.2f} > {limit:.2f}, not rank-1).")
            if first_safe is not None and first_safe < rec:
                explanation += (f" {_fmt(first_safe)} looked safe, but a restorer re-identified again at "
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


class _EmbedCache:
    """Embeds each distinct 8-bit image once (restorers often return their input unchanged)."""

    def __init__(self, embedder: Embedder):
        self.embedder = embedder
        self.cache: dict[bytes, np.ndarray | None] = {}

    def __call__(self, img: np.ndarray) -> np.ndarray | None:
        u8 = to_uint8(img)
        key = hashlib.blake2b(u8.tobytes(), digest_size=16).digest() + bytes(str(u8.shape), "ascii")
        if key not in self.cache:
            self.cache[key] = self.embedder.embed(img)
        return self.cache[key]


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
               restorers: Mapping[str, Mapping[str, object]] | None = None, margin: float = 0.0,
               own_id: str = "query", thorough: bool = False, seed: int = 0, noise: float = NOISE_SIGMA,
               fill: str = "mean", require_face: bool = True, progress: ProgressFn | None = None,
               extra_restorers: Mapping[str, Mapping[str, object]] | None = None) -> SweepResult:
    """Sweep obscuring strengths on one face and find, per kind, the strength no restorer undoes.

    Args:
        clean_crop: aligned face crop (e.g. 128×128 from :func:`deblur.faces.face_crop`).
        gallery: faces *of the same kind as the query* the attacker matches against (a user's folder of real
            photos, FairFace; :func:`builtin_gallery` only for built-in faces); the original is added under
            ``own_id`` unless it is already in it, and its threshold is the match threshold. ``None``: no such
            gallery -- a real face among generated ones is always nearest its own original, so rank-1 would
            be trivially true. The verdict is then the threshold alone: the embedder's published one
            (:data:`deblur.embed.PUBLISHED_THRESHOLDS`), rank-1 is not measured, and ``settings["gallery"]``
            says why.
        embedder: identity judge (default: dlib).
        degradations: kinds to sweep, from :data:`KINDS`.
        strengths: kind → strengths (default :data:`deblur.strengths.SAFETY_GRID`), pixels of the crop.
        restorers: kind → {name → restorer}; default :func:`default_restorers` (every learned and classical
            restorer; Richardson–Lucy only with ``thorough``). Non-blind restorers are told the true strength.
        margin: distance margin above the threshold (>= 0).
        own_id: the original's id in the gallery.
        thorough: include :data:`SLOW_RESTORERS`.
        seed: seed of the ``pixelate_noise`` noise.
        noise: noise std of ``pixelate_noise``.
        fill: ``"mean"`` or ``"black"``.
        require_face: the crop must pass OpenCV's frontal-face Haar cascade, as the audit requires (the dlib
            embedder on a whole crop embeds anything, faces or not). Pass ``False`` when a detector already
            found the face (the app's MTCNN crop).
        extra_restorers: degradation → {name → restorer} added to the default ones (external restorers:
            :func:`deblur.restore.external_restorers`).
        progress: called as ``progress(fraction, message)``.

    Returns:
        A :class:`SweepResult`.

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
    embed = _EmbedCache(embedder)
    original = embed(clean)
    if original is None:
        raise ValueError("the embedder finds no face in this crop; use a frontal face crop (deblur.faces.face_crop)")
    rank1_measured = gallery is not None
    if gallery is None:
        gallery = threshold_only_gallery(embedder.key, original, own_id)
        gallery_note = ("no gallery of faces like this one: judged by the threshold alone "
                        f"({gallery.threshold.source}); rank-1 re-identification is not measured")
    else:
        gallery = with_query(gallery, original, own_id)
        gallery_note = f"gallery of {len(gallery.ids)} faces; rank-1 re-identification measured against it"
    threshold = gallery.threshold
    if restorers is None:
        plan = default_restorers(list(grid), thorough, extra_restorers)
    else:
        plan = {k: {n: (r, None) for n, r in restorers.get(k, {}).items()} for k in grid}
    total = sum(len(grid[k]) * max(1, len(plan.get(k, {}))) for k in grid)
    done = 0
    rows: list[dict] = []
    for kind, values in grid.items():
        degraded = [obscure(clean, kind, s, seed=seed, noise=noise, fill=fill) for s in values]
        for name, (restorer, told) in plan.get(kind, {}).items():
            meta = {"degradation": kind, "restorer": name, "label": getattr(restorer, "label", name),
                    "family": getattr(restorer, "family", ""),
                    "uses_strength": bool(getattr(restorer, "uses_strength", False))}
            outputs, error = _restore_all(restorer, degraded, values, told, meta["uses_strength"])
            for k, s in enumerate(values):
                row = {**meta, "strength": float(s), "told_strength": (told if told is not None else float(s))
                       if meta["uses_strength"] else math.nan}
                if error is not None:
                    row.update(distance=math.nan, rank1=False, status=f"error: {error}"[:300])
                else:
                    emb = embed(outputs[k])
                    if emb is None:
                        row.update(distance=math.nan, rank1=False, status="no_face")
                    else:
                        row.update(distance=l2_distance(emb, original), status="ok",
                                   rank1=rank1_measured and gallery.rank1(emb, own_id))
                rows.append(row)
                done += 1
                if progress is not None:
                    progress(done / total, f"{kind} {s:g}: {name}")
    table = pd.DataFrame(rows)
    table["threshold"] = threshold.distance
    table["margin"] = float(margin)
    table["reidentified"] = _reidentified(table, margin)
    table["embedder"] = embedder.name
    table = table[["degradation", "strength", "restorer", "label", "family", "uses_strength", "told_strength",
                   "distance", "threshold", "margin", "rank1", "reidentified", "status", "embedder"]]
    excluded = () if thorough or restorers is not None else SLOW_RESTORERS
    return SweepResult(table, recommend(table, margin), threshold, float(margin), clean, embedder.name, excluded,
                       time.perf_counter() - start, len(embed.cache), {"seed": seed, "noise": noise, "fill": fill,
                                                                    "gallery": gallery_note,
                                                                    "rank1_measured": rank1_measured})


def _restore_all(restorer, degraded: list[np.ndarray], values: Sequence[float], told: float | None,
                 uses_strength: bool) -> tuple[list[np.ndarray], str | None]:
    """Restore every strength in one batch (learned models run one forward pass); an error is reported, not raised."""
    try:
        given = None
        if uses_strength:
            given = [told if told is not None else float(s) for s in values]
        out = restorer.restore_batch(np.stack(degraded), given)
        return [as_image(o, name=f"output of {getattr(restorer, 'name', 'restorer')}") for o in out], None
    except Exception as exc:  # noqa: BLE001 - one failing restorer must not stop the sweep; the row says why
        return [], f"{type(exc).__name__}: {exc}"
