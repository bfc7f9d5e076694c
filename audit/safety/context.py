"""What every attacker of one sweep shares: the embedding cache, the attack context (gallery, the person's
second view, candidates), the threshold calibration on impostor pairs, and the built-in candidates."""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from audit.safety.gallery import GalleryFaces, builtin_gallery, with_query
from audit.safety.obscure import obscure
from deblur.data import builtin_faces
from deblur.degrade import NOISE_SIGMA, as_image, recapture, to_uint8
from deblur.embed import Embedder, get_embedder

__all__ = ["AttackContext", "EmbedCache", "ObscureFn", "attack_context", "builtin_candidates", "impostor_threshold",
           "min_candidates", "too_few_candidates"]

ObscureFn = Callable[..., np.ndarray]  # obscure(img, kind, strength, seed=...) -> 8-bit rounded image


class EmbedCache:
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


@dataclass
class AttackContext:
    """What every attacker of one sweep shares.

    Attributes:
        embed: the identity judge (cached per distinct image).
        gallery: :class:`audit.engine.Gallery` of clean candidate photos plus the person's reference under
            ``own_id``, with its calibrated threshold.
        reference: the person's *other* photo (clean crop) the attackers must find.
        reference_embedding: its clean embedding.
        own_id: the person's id in the gallery.
        obscure: ``obscure(img, kind, strength, seed=...)`` of the sweep (same noise sigma and fill colour).
        seed: the probe's noise seed.
        fmr: false-match rate the attackers calibrate their thresholds at.
        second_view: ``"recapture"`` (generated proxy) or ``"other_photo"`` (an identity column).
        rank1: whether rank-1 is measured (not against a threshold-only gallery).
        candidate_source: clean photos of the gallery's candidates, or a function returning them;
            :attr:`candidates` keeps those whose ids are in the gallery (never the person), for the parrot and
            the learned attacker's calibration.
    """

    embed: EmbedCache
    gallery: object
    candidate_source: GalleryFaces | Callable[[], GalleryFaces]
    reference: np.ndarray
    reference_embedding: np.ndarray
    own_id: str
    obscure: ObscureFn
    seed: int = 0
    fmr: float = 0.01
    second_view: str = "recapture"
    cache: dict = field(default_factory=dict)
    rank1: bool = True

    @functools.cached_property
    def candidate_pool(self) -> GalleryFaces:
        """Every candidate photo of the source (loaded on first use: only two attackers need them). The same pool
        serves every face of a data set, so work on it (the parrot's obscured embeddings) is done once."""
        return self.candidate_source() if callable(self.candidate_source) else self.candidate_source

    def pool_setting(self, kind: str, strength: float) -> tuple:
        """What the candidate pool obscured with ``kind`` at ``strength`` depends on: the kind, the strength, the
        pool, and the one obscuring setting this kind uses (noise sigma, fill colour). Keys the attackers' caches."""
        how = getattr(self.obscure, "keywords", {})
        extra = {"pixelate_noise": how.get("noise"), "fill": how.get("fill")}.get(kind)
        return kind, float(strength), self.candidate_pool.key, extra

    def obscured_pool(self, kind: str, strength: float) -> list[np.ndarray]:
        """Every candidate of the pool obscured with ``kind`` at ``strength``; each its own noise draw (a shared
        pattern would match itself), the same for every face of a sweep or data set."""
        return [self.obscure(img, kind, strength, seed=10_000 + j) for j, img in enumerate(self.candidate_pool.images)]

    @functools.cached_property
    def candidate_rows(self) -> np.ndarray:
        """Rows of :attr:`candidate_pool` whose ids are in the gallery, the person excluded."""
        known = set(self.gallery.ids) - {self.own_id}
        return np.array([k for k, i in enumerate(self.candidate_pool.ids) if i in known], dtype=int)

    @functools.cached_property
    def candidates(self) -> GalleryFaces:
        """The candidates' photos whose ids are in the gallery, the person excluded."""
        pool, keep = self.candidate_pool, self.candidate_rows
        return GalleryFaces(tuple(pool.ids[k] for k in keep), pool.images[keep])


def impostor_threshold(distances: np.ndarray, fmr: float) -> float:
    """The largest impostor distance ``t`` with at most ``fmr`` of the impostor distances ``<= t``.

    Ties count: when obscuring makes many faces identical (solid fill) no ``t`` qualifies and the result is
    ``-inf`` (nothing matches on distance; only a strict rank-1 could).
    """
    d = np.sort(np.asarray(distances, float).ravel())
    d = d[np.isfinite(d)]
    if d.size < 1 / fmr:
        raise ValueError(f"{d.size} impostor pairs cannot calibrate a false-match rate of {fmr:g}; "
                         f"use a gallery of at least {math.ceil(math.sqrt(2 / fmr)) + 1} faces")
    rate = np.searchsorted(d, d, side="right") / d.size  # fraction of impostors matching at threshold d[k]
    ok = np.flatnonzero(rate <= fmr)
    return float(d[ok[-1]]) if ok.size else -math.inf


def min_candidates(fmr: float, ordered: bool) -> int:
    """The fewest candidate photos whose impostor pairs can calibrate false-match rate ``fmr``.

    ``ordered``: pairs *(i, j)* and *(j, i)* both count (the learned attacker's prediction of *i* vs clean *j*);
    otherwise each unordered pair once (the parrot's obscured vs obscured).
    """
    n = 2
    while (n * (n - 1) if ordered else n * (n - 1) // 2) < 1 / fmr:
        n += 1
    return n


def too_few_candidates(ctx: AttackContext, ordered: bool) -> str | None:
    """The ``status`` of an attacker that cannot run because the candidates cannot calibrate its threshold,
    or ``None`` when they can."""
    have, need = len(ctx.candidates.ids), min_candidates(ctx.fmr, ordered)
    if not have:
        return "not run: no gallery of faces like this one"
    if have < need:
        return (f"not run: {have} candidate photos cannot calibrate a {ctx.fmr:.0%} false-match rate "
                f"(needs {need}); use a larger gallery")
    return None


@functools.lru_cache(maxsize=4)
def builtin_candidates(n: int = 50, seed: int = 0) -> GalleryFaces:
    """The first ``n`` built-in *test* faces (all in :func:`audit.safety.builtin_gallery`), as attack candidates.

    Kept per process (read-only): reading the built-in set from its compressed cache takes seconds, and every
    face of an anonymised photo or a sweep needs the same candidates.
    """
    faces = builtin_faces(4000, seed).subset("test")
    images = np.array(faces.images[:n])
    images.setflags(write=False)
    return GalleryFaces(tuple(faces.ids[:n]), images)


def attack_context(clean: np.ndarray, *, embedder: Embedder | None = None, gallery=None,
                   candidates: GalleryFaces | None = None, references: Sequence[np.ndarray] = (), seed: int = 0,
                   noise: float = NOISE_SIGMA, fill: str = "mean", fmr: float = 0.01,
                   own_id: str = "query", rank1: bool = True) -> AttackContext | None:
    """Everything the attackers need to attack one face, or ``None`` when the embedder cannot read its second view.

    Args:
        clean: the person's clean 128-px crop (the photo that gets obscured).
        embedder: identity judge (default dlib).
        gallery: clean candidate gallery (default :func:`audit.safety.builtin_gallery`); the person's reference
            is added under ``own_id``.
        candidates: candidates' clean photos (default: :func:`builtin_candidates`, loaded when first needed),
            restricted to those whose ids are in the gallery.
        references: the person's *other* photos (clean crops). Without them a re-captured view of ``clean``
            (:func:`deblur.degrade.recapture`, seeded by ``seed``) stands in, reported as a proxy.
        seed, noise, fill: the obscuring of the sweep.
        fmr: false-match rate of every attacker's threshold.
        own_id: the person's id in the galleries.
        rank1: measure rank-1 (``False`` for a threshold-only gallery: no faces like the person's to rank).
    """
    embed = EmbedCache(embedder or get_embedder("dlib"))
    base = gallery if gallery is not None else builtin_gallery(embed.embedder.key)
    if references:
        reference, second_view = as_image(references[0]), "other_photo"
    else:
        reference, second_view = recapture(clean, np.random.default_rng([seed, 31])), "recapture"
    ref_emb = embed(reference)
    if ref_emb is None:
        return None
    if own_id in base.ids:  # the person is in the gallery only through the reference, never as this photo
        keep = [k for k, i in enumerate(base.ids) if i != own_id]
        base = type(base)([base.ids[k] for k in keep], base.embeddings[keep], base.centre, base.threshold)
    full = with_query(base, ref_emb, own_id)
    for extra in references[1:]:  # further photos of the person: more chances for rank-1
        e = embed(as_image(extra))
        if e is not None:
            full = type(full)(full.ids + [own_id], np.vstack([full.embeddings, e[None]]), full.centre, full.threshold)
    return AttackContext(embed, full, candidates if candidates is not None else builtin_candidates, reference, ref_emb,
                         own_id, functools.partial(obscure, noise=noise, fill=fill), seed, fmr, second_view,
                         rank1=rank1)
