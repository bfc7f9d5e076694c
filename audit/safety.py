"""'Is this blur safe?': how strong must obscuring be before none of our restorers brings the identity back.

For one face crop, :func:`sweep_face` degrades it over a grid of strengths per degradation, rounds every
degraded image to 8 bits (as a saved photo is), runs every restorer we have on it — the classical
non-blind ones are *told the true kernel or block size* (the attacker who guesses the kernel), the learned
models, and ``"none"`` (the obscured image itself) — embeds each output and measures

- the identity distance restored→original (L2 between embeddings), and
- rank-1 re-identification against a gallery: the built-in faces' clean embeddings plus the original.

A restorer **re-identifies** at a strength when its distance is ``<= threshold + margin`` (threshold
calibrated at a fixed false-match rate on the gallery) *or* the nearest gallery face is the original. The
**recommended strength** of a degradation is the smallest tested strength from which no restorer
re-identifies at that strength *or any larger tested one* (a curve that dips back under the threshold
does not get a recommendation below the dip); ``None`` when no tested strength qualifies.

Two non-invertible obscurings are swept the same way for comparison: ``fill`` (the crop replaced by its
mean colour, or black) and ``pixelate_noise`` (block means plus seeded Gaussian noise per block, in the
spirit of Fan's differentially private pixelisation, 2018).

This measures a **lower bound on risk**: stronger restorers exist (GFPGAN, CodeFormer, PULSE-style
generative search over a face prior), an attacker may have a better gallery, and the identity judge is one
embedder (dlib). "Safe here" does not mean safe.

Command line (see ``docs/SAFETY.md``)::

    python -m audit.safety --image examples/generated-0.png --out results/safety_face
    python -m audit.safety --data builtin --n 24 --thorough --out results/safety_example
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from audit.engine import Gallery
from audit.metrics import Threshold, group_metrics
from deblur.degrade import (
    DEGRADATIONS,
    NOISE_SIGMA,
    as_image,
    degrade,
    pixelate_noise,
    quantize,
    solid_fill,
    to_uint8,
)
from deblur.embed import Embedder, get_embedder, l2_distance
from deblur.io import encode_png
from deblur.restore import restorers_for
from deblur.strengths import OBSCURING_KINDS, SAFETY_GRID, STRENGTHS, check_strength

__all__ = ["KINDS", "LOWER_BOUND_NOTE", "NONINVERTIBLE", "SLOW_RESTORERS", "DatasetSafety",
           "Recommendation", "SweepResult", "builtin_gallery", "figure", "gallery_from_faces", "obscure",
           "recommend", "sweep_dataset", "sweep_face", "with_query"]

NONINVERTIBLE = tuple(OBSCURING_KINDS)
KINDS = (*DEGRADATIONS, *NONINVERTIBLE)
# Richardson–Lucy costs ~110 ms per image on top of its embedding and restored less identity than Wiener on
# our faces; the interactive sweep skips it (``thorough=True`` / ``--thorough`` puts it back).
SLOW_RESTORERS = ("richardson-lucy",)
DUPLICATE_DISTANCE = 0.1  # gallery faces this close to the query are the same picture (re-encoded), not a match
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


# ----------------------------------------------------------------------------------------------------------------
# Obscuring


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown degradation {kind!r}; choose one of {list(KINDS)}")


def _check_strengths(kind: str, strengths: Sequence[float]) -> tuple[float, ...]:
    values = list(strengths) if strengths is not None else []
    if not values:
        raise ValueError(f"the strength list of {kind!r} is empty; give at least one strength "
                         f"(e.g. {SAFETY_GRID[kind]})")
    if kind == "fill":
        return (1.0,)
    base = "pixelate" if kind == "pixelate_noise" else kind
    return tuple(sorted({check_strength(base, s) for s in values}))


def obscure(img: np.ndarray, kind: str, strength: float, *, seed: int = 0, noise: float = NOISE_SIGMA,
            fill: str = "mean") -> np.ndarray:
    """Obscure a face crop with ``kind`` at ``strength`` and round to 8 bits (what a saved photo holds).

    Args:
        img: face crop.
        kind: one of :data:`KINDS`.
        strength: σ, block size or kernel length in pixels of the crop (ignored for ``fill``).
        seed: seed of the ``pixelate_noise`` noise (one generator per ``(seed, block)``).
        noise: noise std of ``pixelate_noise``.
        fill: ``"mean"`` or ``"black"`` for ``fill``.
    """
    _check_kind(kind)
    if kind == "fill":
        out = solid_fill(img, fill)
    elif kind == "pixelate_noise":
        out = pixelate_noise(img, int(check_strength("pixelate", strength)),
                             np.random.default_rng([seed, int(strength)]), noise)
    else:
        out = degrade(img, kind, strength)
    return quantize(out)


# ----------------------------------------------------------------------------------------------------------------
# Gallery


def gallery_from_faces(faces, embedder: Embedder, n: int | None = None, fmr: float = 0.01, seed: int = 0) -> Gallery:
    """A gallery of the clean embeddings of the first ``n`` faces of a :class:`deblur.data.FaceSet`.

    The threshold is calibrated on these faces' impostor pairs at false-match rate ``fmr``.
    """
    count = len(faces) if n is None else min(int(n), len(faces))
    ids, embs = [], []
    for i in range(count):
        e = embedder.embed(faces.image(i))
        if e is not None:
            ids.append(faces.ids[i])
            embs.append(e)
    return Gallery.build(ids, embs, fmr, seed)


@functools.lru_cache(maxsize=4)
def builtin_gallery(embedder_name: str = "dlib", n: int = 200, seed: int = 0, fmr: float = 0.01) -> Gallery:
    """Clean embeddings of the first ``n`` built-in *test* faces, cached in ``cache_dir()`` (computed once).

    ``embedder_name`` is a key of :data:`deblur.embed.EMBEDDERS` (an embedder's ``.key``, not its report name).

    Embedding 200 faces takes ~16 s on one core; later calls read the ``.npz`` (and this process keeps it).
    """
    from deblur.data import builtin_faces, cache_dir

    embedder = get_embedder(embedder_name)
    path = cache_dir() / f"safety-gallery-{embedder.name}-s{seed}-n{n}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            return Gallery.build([str(i) for i in z["ids"]], list(z["embeddings"]), fmr, seed)
    faces = builtin_faces(4000, seed).subset("test")
    gallery = gallery_from_faces(faces, embedder, n, fmr, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, ids=np.array(gallery.ids), embeddings=gallery.embeddings)
    tmp.replace(path)
    return gallery


def with_query(gallery: Gallery, embedding: np.ndarray, own_id: str = "query") -> Gallery:
    """The gallery plus the original face, keeping the gallery's calibrated threshold.

    Gallery faces closer than :data:`DUPLICATE_DISTANCE` to the query are the same picture (e.g. a built-in
    face uploaded again) and are dropped, so that rank-1 can only point at the query itself.
    """
    if gallery.threshold is None:
        raise ValueError("the gallery has no calibrated threshold: build it from at least 2 faces")
    if own_id in gallery.ids:
        return gallery
    d = np.linalg.norm(gallery.embeddings - np.asarray(embedding, float), axis=1)
    keep = d >= DUPLICATE_DISTANCE
    ids = [i for i, k in zip(gallery.ids, keep, strict=True) if k] + [own_id]
    emb = np.vstack([gallery.embeddings[keep], np.asarray(embedding, float)[None]])
    return Gallery(ids, emb, gallery.centre, gallery.threshold)


# ----------------------------------------------------------------------------------------------------------------
# Restorers


def default_restorers(kinds: Sequence[str], thorough: bool = False
                      ) -> dict[str, dict[str, tuple[object, float | None]]]:
    """Restorers per obscuring kind, each with the strength it is told (``None``: told the sweep's strength).

    ``pixelate_noise`` gets the pixelation restorers (told the true block size); ``fill`` gets every
    restorer of every degradation, each told that degradation's default strength (there is nothing to know).
    """
    exclude = () if thorough else SLOW_RESTORERS
    out: dict[str, dict[str, tuple[object, float | None]]] = {}
    for kind in kinds:
        _check_kind(kind)
        if kind == "fill":
            found = {}
            for base in DEGRADATIONS:
                for name, r in restorers_for(base).items():
                    if name in exclude:
                        continue
                    key = "none" if name == "none" else f"{name} ({base})"
                    found.setdefault(key, (r, float(STRENGTHS[base].default)))
            out[kind] = found
        else:
            base = "pixelate" if kind == "pixelate_noise" else kind
            out[kind] = {n: (r, None) for n, r in restorers_for(base).items() if n not in exclude}
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


def _resolve_grid(degradations: Sequence[str], strengths: Mapping[str, Sequence[float]] | None) -> dict:
    kinds = list(degradations)
    if not kinds:
        raise ValueError(f"no degradation to sweep; choose from {list(KINDS)}")
    for kind in kinds:
        _check_kind(kind)
    strengths = dict(strengths or {})
    unknown = [k for k in strengths if k not in kinds]
    if unknown:
        raise ValueError(f"strengths given for {unknown}, which are not among the degradations {kinds}")
    return {k: _check_strengths(k, strengths.get(k, SAFETY_GRID[k])) for k in kinds}


def sweep_face(clean_crop: np.ndarray, *, gallery: Gallery | None = None, embedder: Embedder | None = None,
               degradations: Sequence[str] = KINDS, strengths: Mapping[str, Sequence[float]] | None = None,
               restorers: Mapping[str, Mapping[str, object]] | None = None, margin: float = 0.0,
               own_id: str = "query", thorough: bool = False, seed: int = 0, noise: float = NOISE_SIGMA,
               fill: str = "mean", require_face: bool = True, progress: ProgressFn | None = None) -> SweepResult:
    """Sweep obscuring strengths on one face and find, per kind, the strength no restorer undoes.

    Args:
        clean_crop: aligned face crop (e.g. 128×128 from :func:`deblur.faces.face_crop`).
        gallery: faces the attacker matches against (default: :func:`builtin_gallery`); the original is added
            under ``own_id`` unless it is already in it. Its threshold is the match threshold.
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
        progress: called as ``progress(fraction, message)``.

    Returns:
        A :class:`SweepResult`.

    Raises:
        ValueError: unknown degradation, empty or invalid strengths, negative margin, or a crop without a face.
    """
    start = time.perf_counter()
    if not (math.isfinite(margin) and margin >= 0):
        raise ValueError(f"margin must be a finite number >= 0, got {margin}")
    grid = _resolve_grid(degradations, strengths)
    clean = quantize(as_image(clean_crop, name="face crop"))
    if require_face:
        from deblur.faces import haar_has_face

        if not haar_has_face(clean):
            raise ValueError("no face found in this crop by the frontal-face detector; pass an aligned frontal face "
                             "crop (deblur.faces.face_crop) or require_face=False if you know it is one")
    embedder = embedder or get_embedder("dlib")
    embed = _EmbedCache(embedder)
    original = embed(clean)
    if original is None:
        raise ValueError("the embedder finds no face in this crop; use a frontal face crop (deblur.faces.face_crop)")
    gallery = with_query(gallery if gallery is not None else builtin_gallery(embedder.key), original, own_id)
    threshold = gallery.threshold
    if restorers is None:
        plan = default_restorers(list(grid), thorough)
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
                        row.update(distance=l2_distance(emb, original), rank1=gallery.rank1(emb, own_id), status="ok")
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
                       time.perf_counter() - start, len(embed.cache), {"seed": seed, "noise": noise, "fill": fill})


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


# ----------------------------------------------------------------------------------------------------------------
# Figures


def figure(result: SweepResult, kind: str):
    """Plotly figure: identity distance restored→original vs strength, one line per restorer.

    Dashed line: the threshold; dotted: threshold + margin; green band/line: the recommended strength.
    Crosses mark rank-1 re-identifications.
    """
    import plotly.graph_objects as go

    _check_kind(kind)
    t = result.table[result.table["degradation"] == kind]
    if t.empty:
        raise ValueError(f"{kind!r} was not swept; swept: {sorted(result.table['degradation'].unique())}")
    rec = result.recommendations[kind]
    fig = go.Figure()
    for name, part in t.groupby("restorer", sort=False):
        part = part.sort_values("strength")
        fig.add_trace(go.Scatter(x=part["strength"], y=part["distance"], mode="lines+markers", name=str(name),
                                 marker={"symbol": np.where(part["rank1"], "x", "circle"), "size": 8},
                                 hovertemplate="strength %{x}<br>distance %{y:.3f}<extra>" + str(name) + "</extra>"))
    fig.add_hline(y=rec.threshold, line_dash="dash", line_color="red",
                  annotation_text=f"match threshold {rec.threshold:.2f} (FMR {result.threshold.fmr_target:g})")
    if rec.margin > 0:
        fig.add_hline(y=rec.threshold + rec.margin, line_dash="dot", line_color="orange",
                      annotation_text=f"threshold + margin {rec.threshold + rec.margin:.2f}",
                      annotation_position="bottom right")
    if rec.strength is not None:
        fig.add_vline(x=rec.strength, line_color="green", line_width=3,
                      annotation_text=f"recommended ≥ {rec.strength:g}", annotation_position="top left")
        title = f"{kind}: safe from {rec.strength:g} against these restorers (lower bound on risk)"
    else:
        title = f"{kind}: no tested strength defeats every restorer (up to {rec.tested_max:g})"
    unit = STRENGTH_LABELS.get(kind) or STRENGTHS[kind].name
    fig.update_layout(title=title, xaxis_title=f"{unit}, pixels of the 128-px face crop",
                      yaxis_title=f"identity distance restored→original (L2, {result.embedder})",
                      legend_title="restorer (× = rank-1 re-identified)", template="plotly_white", height=420)
    return fig


# ----------------------------------------------------------------------------------------------------------------
# Dataset mode


@dataclass
class DatasetSafety:
    """Per-face safe strengths over a data set and their distribution per group.

    Attributes:
        per_face: one row per face: ``image_id``, group columns, ``safe_<kind>`` (NaN: no tested strength is
            safe), ``first_safe_<kind>``.
        rows: the long sweep table of every face (``image_id`` + :attr:`SweepResult.table` columns).
        groups: per kind × attribute × group: n, faces with a safe strength, mean/median safe strength with
            bootstrap CIs, rate of faces with *no* safe strength (Wilson CI), ratio/difference vs reference.
        group_columns: attribute → ``"label"`` or ``"prediction"``.
        settings: how it was run (embedder, threshold, margin, grid, excluded restorers, seconds).
    """

    per_face: pd.DataFrame
    rows: pd.DataFrame
    groups: pd.DataFrame
    group_columns: dict[str, str]
    settings: dict

    def write(self, out: str | Path, plotlyjs: str = "cdn") -> list[Path]:
        """Write ``safety_per_image.csv``, ``safety_rows.csv``, ``safety_groups.csv``, ``safety.json`` and
        ``safety_groups.html`` into ``out`` (an audit folder: they sit next to its ``per_image.csv``, joined on
        ``image_id``)."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        paths = [out / "safety_per_image.csv", out / "safety_rows.csv", out / "safety_groups.csv",
                 out / "safety.json", out / "safety_groups.html"]
        self.per_face.to_csv(paths[0], index=False)
        self.rows.to_csv(paths[1], index=False)
        self.groups.to_csv(paths[2], index=False)
        paths[3].write_text(json.dumps({**self.settings, "group_columns": self.group_columns,
                                        "note": LOWER_BOUND_NOTE}, indent=2, default=str))
        figs = group_figures(self)
        with paths[4].open("w", encoding="utf-8") as fh:
            for k, fig in enumerate(figs):
                fh.write(fig.to_html(full_html=False, include_plotlyjs=plotlyjs if k == 0 else False))
        return paths


def group_figures(ds: DatasetSafety) -> list:
    """Per attribute: mean safe strength per group and kind with 95% bootstrap CIs (faces with a safe strength)."""
    import plotly.express as px

    figs = []
    g = ds.groups
    if g.empty:
        return figs
    for attr, part in g.groupby("attribute", sort=True):
        part = part.assign(err_plus=part["mean_hi"] - part["mean"], err_minus=part["mean"] - part["mean_lo"],
                           label=part["group"] + np.where(part["small"], " (small n)", ""))
        source = ds.group_columns.get(attr, "all")
        fig = px.scatter(part, x="label", y="mean", error_y="err_plus", error_y_minus="err_minus",
                         facet_col="degradation", hover_data=["n", "n_safe", "median", "no_safe_rate"],
                         title=f"Safe strength by {attr} ({source}); mean, 95% bootstrap CI, faces with a safe "
                               "strength only",
                         labels={"mean": "safe strength (px)", "label": attr})
        fig.update_yaxes(matches=None)
        figs.append(fig)
    return figs


def sweep_dataset(faces: Sequence[tuple[str, np.ndarray, Mapping[str, str]]], *, embedder: Embedder | None = None,
                  gallery: Gallery | None = None, degradations: Sequence[str] = DEGRADATIONS,
                  strengths: Mapping[str, Sequence[float]] | None = None, margin: float = 0.0,
                  thorough: bool = False, predict: Sequence[str] | None = None, n_boot: int = 1000, seed: int = 0,
                  min_group_n: int = 30, progress: Callable[[int, int], None] | None = None) -> DatasetSafety:
    """:func:`sweep_face` over many faces, then the distribution of safe strengths per group.

    Groups are formed exactly as the audit forms them (:func:`audit.engine.prepare_face`: dataset labels plus
    predicted gender, age bin and skin-tone bin). The gallery is ``gallery`` (default: the built-in one) plus
    every face of the data set not already in it; faces whose clean crop has no face are counted and skipped.

    Args:
        faces: ``(image_id, image, labels)`` triples (labels: group column → value, may be empty).
        embedder: identity judge (default dlib).
        gallery: base gallery.
        degradations: kinds to sweep.
        strengths: kind → strengths.
        margin: distance margin.
        thorough: include Richardson–Lucy.
        predict: predicted attributes (default :data:`audit.groups.PREDICTED_ATTRIBUTES`).
        n_boot: bootstrap resamples.
        seed: seed of bootstraps and the noise.
        min_group_n: groups smaller than this are flagged ``small``.
        progress: called as ``progress(done, total)`` per face.
    """
    from audit.engine import prepare_face
    from audit.groups import PREDICTED_ATTRIBUTES

    start = time.perf_counter()
    grid = _resolve_grid(degradations, strengths)
    embedder = embedder or get_embedder("dlib")
    predict = PREDICTED_ATTRIBUTES if predict is None else tuple(predict)
    cleans = [prepare_face(img, image_id, embedder, labels=labels, predict=predict) for image_id, img, labels in faces]
    label_cols = sorted({c for _, _, labels in faces for c in labels})
    group_columns = {**{c: "label" for c in label_cols}, **{c: "prediction" for c in predict}}
    base = gallery if gallery is not None else builtin_gallery(embedder.key)
    with_face = [c for c in cleans if c.embedding is not None]
    extra = [c for c in with_face if c.image_id not in base.ids]
    if extra:
        ids = base.ids + [c.image_id for c in extra]
        base = Gallery(ids, np.vstack([base.embeddings, *[c.embedding[None] for c in extra]]), base.centre,
                       base.threshold)
    per_face, long = [], []
    for k, c in enumerate(with_face):
        res = sweep_face(c.image, gallery=base, embedder=embedder, degradations=list(grid), strengths=grid,
                         margin=margin, own_id=c.image_id, thorough=thorough, seed=seed, require_face=False)
        row = {"image_id": c.image_id, **{a: c.groups.get(a, "") for a in group_columns}}
        for kind, rec in res.recommendations.items():
            row[f"safe_{kind}"] = math.nan if rec.strength is None else rec.strength
            row[f"first_safe_{kind}"] = math.nan if rec.first_safe is None else rec.first_safe
        row["sweep_seconds"] = res.seconds
        per_face.append(row)
        long.append(res.table.assign(image_id=c.image_id))
        if progress is not None:
            progress(k + 1, len(with_face))
    per_face_df = pd.DataFrame(per_face)
    rows = pd.concat(long, ignore_index=True) if long else pd.DataFrame()
    groups = _group_table(per_face_df, list(grid), group_columns, n_boot, seed, min_group_n)
    settings = {"embedder": embedder.name, "threshold": base.threshold.distance if base.threshold else None,
                "fmr": base.threshold.fmr_target if base.threshold else None, "margin": margin,
                "strengths": {k: list(v) for k, v in grid.items()}, "gallery_size": len(base.ids),
                "excluded_restorers": [] if thorough else list(SLOW_RESTORERS), "n_faces": len(cleans),
                "n_no_face_clean": len(cleans) - len(with_face), "seconds": time.perf_counter() - start,
                "n_boot": n_boot, "seed": seed, "noise": NOISE_SIGMA}
    return DatasetSafety(per_face_df, rows, groups, group_columns, settings)


def _group_table(per_face: pd.DataFrame, kinds: Sequence[str], group_columns: Mapping[str, str], n_boot: int,
                 seed: int, min_n: int) -> pd.DataFrame:
    out = []
    if per_face.empty:
        return pd.DataFrame()
    attrs = {"all": "all", **group_columns}
    for kind in kinds:
        values = per_face[f"safe_{kind}"].to_numpy(float)
        none_safe = np.isnan(values)
        for attr, source in attrs.items():
            groups = ["all"] * len(per_face) if attr == "all" else per_face[attr].astype(str).tolist()
            for s in group_metrics(values, none_safe, groups, min_n=min_n, n_boot=n_boot, seed=seed):
                out.append({"degradation": kind, "attribute": attr, "label_source": source, "group": s.group,
                            "n": s.n, "n_safe": s.n_valid, "mean": s.mean, "mean_lo": s.mean_lo,
                            "mean_hi": s.mean_hi, "median": s.median, "median_lo": s.median_lo,
                            "median_hi": s.median_hi, "no_safe": s.failures, "no_safe_rate": s.fail_rate,
                            "no_safe_lo": s.fail_lo, "no_safe_hi": s.fail_hi, "small": s.small,
                            "is_reference": s.is_reference, "mean_diff": s.mean_diff, "p_mean": s.p_mean,
                            "p_no_safe": s.p_fail})
    return pd.DataFrame(out)


# ----------------------------------------------------------------------------------------------------------------
# Command line


def _face_items(data: str, n: int, labels: str | None, fmt: str | None):
    """``(id, image, labels)`` of a data set, read exactly as the audit reads it (same ids, same order)."""
    from audit.engine import AuditConfig, _items

    _, items, _ = _items(AuditConfig(data=data, labels=labels, format=fmt, n=n))
    return [(image_id, img, lab) for image_id, img, lab, reason in items if reason is None]


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m audit.safety`` argument parser."""
    p = argparse.ArgumentParser(prog="python -m audit.safety", description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group()
    src.add_argument("--image", help="one photo or face crop: sweep it and write figures + obscured PNGs")
    src.add_argument("--data", default="builtin", help="'builtin' or a data folder (dataset mode, as python -m audit)")
    p.add_argument("--labels", help="labels CSV for --data (folder format)")
    p.add_argument("--format", help="folder, celeba, fairface or utkface (detected when omitted)")
    p.add_argument("--n", type=int, default=24, help="faces in dataset mode")
    p.add_argument("--margin", type=float, default=0.0, help="distance margin above the threshold")
    p.add_argument("--degradations", nargs="+", default=None, choices=list(KINDS))
    p.add_argument("--thorough", action="store_true", help="also run Richardson-Lucy (slower)")
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plotlyjs", default="cdn", choices=["cdn", "inline"], help="plotly.js in the HTML")
    p.add_argument("--out", default="results/safety")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run a one-face sweep (``--image``) or dataset mode and write the outputs into ``--out``."""
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.image:
        from audit.engine import to_crop
        from deblur.io import load_image

        crop = to_crop(load_image(args.image))
        if crop is None:
            print(f"no face found in {args.image}", file=sys.stderr)
            return 2
        res = sweep_face(crop, degradations=args.degradations or KINDS, margin=args.margin, thorough=args.thorough,
                         seed=args.seed)
        res.table.to_csv(out / "safety_sweep.csv", index=False)
        res.summary().to_csv(out / "safety_recommendations.csv", index=False)
        with (out / "safety_sweep.html").open("w", encoding="utf-8") as fh:
            for k, kind in enumerate(res.recommendations):
                js = args.plotlyjs if k == 0 else False
                fh.write(figure(res, kind).to_html(full_html=False, include_plotlyjs=js))
        for kind in res.recommendations:
            data = res.png(kind)
            if data is not None:
                (out / f"obscured_{kind}.png").write_bytes(data)
        print(res.summary()[["degradation", "recommended", "first_safe", "tested_max"]].to_string(index=False))
        print(f"{res.seconds:.1f} s, {res.n_embeddings} embeddings; excluded: {list(res.excluded)}")
        return 0
    items = _face_items(args.data, args.n, args.labels, args.format)
    ds = sweep_dataset(items, degradations=args.degradations or DEGRADATIONS, margin=args.margin,
                       thorough=args.thorough, n_boot=args.n_boot, seed=args.seed,
                       progress=lambda d, t: print(f"\r{d}/{t} faces", end="", file=sys.stderr, flush=True))
    print(file=sys.stderr)
    paths = ds.write(out, args.plotlyjs)
    cols = [c for c in ds.per_face.columns if c.startswith("safe_")]
    print(ds.per_face[cols].describe().to_string())
    print("wrote", ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
