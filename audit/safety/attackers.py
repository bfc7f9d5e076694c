"""The attackers of "Is this blur safe?": each tries to re-identify an obscured face; the verdict needs all to fail.

Every attacker sees the person's photo obscured at each strength of a sweep (the *probe*) and holds a
gallery in which the person appears through a **different photo** (the *reference*: another photo of the
same identity, or on generated faces a re-captured second view, :func:`deblur.degrade.recapture`, reported
as a proxy). It returns one row per strength (per variant), with the distance between its probe embedding
and the person's reference, the match threshold *of its own embedding space* and whether the nearest face
of its gallery is the person (rank-1).

- :class:`RestoreAttacker` (``restore``): restore the face with every restorer we have, told the true
  strength, embed it, match against clean photos. Threshold: the clean gallery's (calibrated at FMR 1 %).
- :class:`ParrotAttacker` (``parrot``): no restoration; match the obscured probe against a gallery obscured
  *the same way* (McPherson et al. 2016). Threshold: calibrated on the obscured gallery's impostor pairs at
  the same FMR, because obscured faces all look alike (a clean threshold would match everyone).
- :class:`UnknownKernelAttacker` (``unknown-kernel``): does not know the kernel: the blind estimator
  (:func:`deblur.estimate.estimate`) guesses kind and strength, the classical restorer of the guessed kind
  restores with the guess, match against clean photos.
- :class:`LearnedAttacker` (``learned``): a network trained on obscured faces predicts the clean embedding
  (:class:`deblur.train.attacker.EmbeddingAttacker`, Hao et al. 2020); match against clean photos.
  Threshold: calibrated on its own impostor pairs (prediction for gallery face *i* vs clean face *j ≠ i*).

A row re-identifies when ``distance <= threshold + margin`` or rank-1 (see :mod:`audit.safety`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from audit.safety.context import (
    AttackContext,
    EmbedCache,
    attack_context,
    builtin_candidates,
    impostor_threshold,
    too_few_candidates,
)
from audit.safety.gallery import GalleryFaces
from audit.safety.obscure import check_kind
from deblur.data import cache_dir
from deblur.degrade import DEGRADATIONS, as_image
from deblur.embed import l2_distance
from deblur.estimate import estimate
from deblur.restore import restorers_for
from deblur.restore.classical import classical_restorers
from deblur.strengths import STRENGTHS

__all__ = ["ATTACKER_NAMES", "SLOW_RESTORERS", "AttackContext", "Attacker", "EmbedCache", "GalleryFaces",
           "LearnedAttacker", "ParrotAttacker", "RestoreAttacker", "UnknownKernelAttacker", "attack_context",
           "builtin_candidates", "default_attackers", "default_fill_attackers", "default_restorers",
           "impostor_threshold"]

ATTACKER_NAMES = ("restore", "parrot", "unknown-kernel", "learned")
# Richardson–Lucy costs ~110 ms per image on top of its embedding and restored less identity than Wiener on
# our faces; the interactive sweep skips it (``thorough=True`` / ``--thorough`` puts it back).
SLOW_RESTORERS = ("richardson-lucy",)


@runtime_checkable
class Attacker(Protocol):
    """One way to re-identify an obscured face.

    Attributes:
        name: one of :data:`ATTACKER_NAMES` (the ``attacker`` column of the sweep table).
        description: one sentence for reports.
    """

    name: str
    description: str

    def attack(self, kind: str, strengths: Sequence[float], probes: Sequence[np.ndarray],
               ctx: AttackContext) -> list[dict]:
        """Rows (``restorer``, ``label``, ``family``, ``uses_strength``, ``told_strength``, ``strength``,
        ``distance``, ``threshold``, ``rank1``, ``status``) for the probes obscured with ``kind`` at ``strengths``.
        An attacker that does not apply to ``kind`` returns no rows."""
        ...


def _match(ctx: AttackContext, emb: np.ndarray | None, threshold: float, gallery=None) -> dict:
    if emb is None:
        return {"distance": math.nan, "threshold": threshold, "rank1": False, "status": "no_face"}
    gallery = gallery if gallery is not None else ctx.gallery
    return {"distance": l2_distance(emb, ctx.reference_embedding), "threshold": threshold,
            "rank1": bool(ctx.rank1 and gallery.rank1(emb, ctx.own_id)), "status": "ok"}


def _row(kind: str, strength: float, variant: str, label: str, family: str, told: float | None) -> dict:
    return {"degradation": kind, "strength": float(strength), "restorer": variant, "label": label, "family": family,
            "uses_strength": told is not None, "told_strength": math.nan if told is None else float(told)}


class RestoreAttacker:
    """Restore (every restorer, told the true strength), embed, match against clean photos.

    Args:
        plan: kind → {restorer name → (restorer, told strength or ``None`` = the true one)}
            (:func:`audit.safety.default_restorers`).
    """

    name = "restore"
    description = "restores the face with each of our restorers told the true strength, then matches clean photos"

    def __init__(self, plan: dict):
        self.plan = plan

    def attack(self, kind, strengths, probes, ctx):
        rows = []
        for name, (restorer, told) in self.plan.get(kind, {}).items():
            uses = bool(getattr(restorer, "uses_strength", False))
            given = [told if told is not None else float(s) for s in strengths] if uses else None
            try:
                outs = [as_image(o) for o in restorer.restore_batch(np.stack(probes), given)]
                error = None
            except Exception as exc:  # noqa: BLE001 - one failing restorer must not stop the sweep; the row says why
                outs, error = [], f"error: {type(exc).__name__}: {exc}"[:300]
            for k, s in enumerate(strengths):
                row = _row(kind, s, name, getattr(restorer, "label", name), getattr(restorer, "family", ""),
                           given[k] if given else None)
                if error:
                    row.update(distance=math.nan, threshold=ctx.gallery.threshold.distance, rank1=False, status=error)
                else:
                    row.update(_match(ctx, ctx.embed(outs[k]), ctx.gallery.threshold.distance))
                rows.append(row)
        return rows


_POOL_MEMO: dict[str, np.ndarray] = {}  # this process: obscured candidate embeddings, shared by a data set's faces


class ParrotAttacker:
    """Match the obscured probe against candidates' photos obscured the same way (no restoration).

    Args:
        disk_cache: cache the obscured candidates' embeddings in ``cache_dir()`` per kind and strength
            (computing them costs one embedding per candidate and strength, once).
    """

    name = "parrot"
    description = "matches the obscured face against candidates' photos obscured the same way"

    def __init__(self, disk_cache: bool = True):
        self.disk_cache = disk_cache

    def _gallery_embeddings(self, kind: str, s: float, ctx: AttackContext) -> np.ndarray:
        """Embeddings of the candidates obscured with ``kind`` at ``s`` (NaN rows: no face found)."""
        return self._pool_embeddings(kind, s, ctx)[ctx.candidate_rows]

    def _pool_embeddings(self, kind: str, s: float, ctx: AttackContext) -> np.ndarray:
        settings = json.dumps([ctx.embed.embedder.name, *ctx.pool_setting(kind, s)], default=str)
        tag = hashlib.blake2b(settings.encode(), digest_size=8).hexdigest()
        if tag in _POOL_MEMO:
            return _POOL_MEMO[tag]
        path = cache_dir() / f"parrot-{tag}.npy"
        if self.disk_cache and path.is_file():
            out = np.load(path, allow_pickle=False)
        else:
            obscured = ctx.obscured_pool(kind, s)
            out = np.full((len(obscured), ctx.embed.embedder.dim), np.nan)
            for j, img in enumerate(obscured):
                e = ctx.embed.embedder.embed(img)
                if e is not None:
                    out[j] = e
            if self.disk_cache:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npy")  # workers may race: each its own file
                np.save(tmp, out)
                tmp.replace(path)
        if len(_POOL_MEMO) >= 256:
            _POOL_MEMO.pop(next(iter(_POOL_MEMO)))
        _POOL_MEMO[tag] = out
        return out

    def attack(self, kind, strengths, probes, ctx):
        rows = []
        for s, probe in zip(strengths, probes, strict=True):
            row = _row(kind, s, "none (obscured vs obscured)", "parrot: obscured gallery", "parrot", None)
            emb = ctx.embed(probe)
            ref = ctx.embed(ctx.obscure(ctx.reference, kind, s, seed=ctx.seed + 1))
            missing = too_few_candidates(ctx, ordered=False)
            if missing:
                row.update(distance=math.nan, threshold=math.nan, rank1=False, status=missing)
                rows.append(row)
                continue
            gal = self._gallery_embeddings(kind, s, ctx)
            ok = ~np.isnan(gal).any(axis=1)
            if ok.sum() < 2 or ref is None:
                row.update(distance=math.nan, threshold=math.nan, rank1=False,
                           status="no_face" if emb is None or ref is None else "gallery_unembeddable")
                rows.append(row)
                continue
            g = gal[ok]
            impostors = np.linalg.norm(g[:, None] - g[None], axis=2)[np.triu_indices(len(g), 1)]
            threshold = impostor_threshold(impostors, ctx.fmr)
            if emb is None:
                row.update(distance=math.nan, threshold=threshold, rank1=False, status="no_face")
            else:
                d = l2_distance(emb, ref)
                # strictly nearer than every candidate (beyond rounding): identical obscured faces (fill) identify
                # nobody
                nearest_other = float(np.linalg.norm(g - emb, axis=1).min())
                row.update(distance=d, threshold=threshold, rank1=bool(d < nearest_other - 1e-9), status="ok")
            rows.append(row)
        return rows


class UnknownKernelAttacker:
    """Guess kind and strength with the blind estimator, restore with the classical restorer of the guess.

    Args:
        estimate: ``estimate(img) -> Estimate`` (:func:`deblur.estimate.estimate`).
        restorers: kind → restorer told the estimated strength (default: the non-blind classical one).
    """

    name = "unknown-kernel"
    description = "guesses the kernel with the blind estimator and restores with the guess"

    def __init__(self, estimate: Callable, restorers: dict | None = None):
        self.estimate = estimate
        if restorers is None:
            restorers = {k: next(r for n, r in classical_restorers(k).items() if n != "none") for k in DEGRADATIONS}
        self.restorers = restorers

    def attack(self, kind, strengths, probes, ctx):
        rows = []
        for s, probe in zip(strengths, probes, strict=True):
            est = self.estimate(probe)
            guess, told = est.kind, est.for_restorer()
            restorer = self.restorers[guess]
            row = _row(kind, s, f"{restorer.name} on the estimate", f"blind estimate: {guess} {told:g}",
                       "unknown-kernel", told)
            row["estimated_kind"] = guess
            restored = as_image(restorer.restore_batch(probe[None], [told])[0])
            row.update(_match(ctx, ctx.embed(restored), ctx.gallery.threshold.distance))
            rows.append(row)
        return rows


class LearnedAttacker:
    """A network trained on obscured faces predicts the clean embedding; match against clean photos.

    Args:
        model: :class:`deblur.train.attacker.EmbeddingAttacker`.
    """

    name = "learned"
    description = "a network trained on obscured faces predicts the clean identity embedding"

    def __init__(self, model):
        self.model = model

    @property
    def _memo(self) -> dict:
        """Predictions for the candidate pool, kept with the model (shared by every sweep using this instance)."""
        if not hasattr(self.model, "pool_memo"):
            self.model.pool_memo = {}
        return self.model.pool_memo

    def _pool_predictions(self, kind: str, s: float, ctx: AttackContext) -> np.ndarray:
        """Predicted embeddings of every candidate of the pool obscured with ``kind`` at ``s`` (kept per process:
        the same for every face of a photo or a data set)."""
        key = ctx.pool_setting(kind, s)
        memo = self._memo  # per model instance: another model (or retrained weights) starts empty
        if key not in memo:
            obscured = ctx.obscured_pool(kind, s)
            if len(memo) >= 256:
                memo.pop(next(iter(memo)))
            memo[key] = self.model.predict(obscured, kind, [s] * len(obscured))
        return memo[key]

    def _threshold(self, kind: str, s: float, ctx: AttackContext) -> float:
        key = ("learned-threshold", kind, s)
        if key not in ctx.cache:
            index = {i: k for k, i in enumerate(ctx.gallery.ids)}
            rows = [index.get(i) for i in ctx.candidates.ids]
            if any(r is None for r in rows):
                raise ValueError("every candidate photo of the learned attacker must be in the clean gallery")
            pred = self._pool_predictions(kind, s, ctx)[ctx.candidate_rows]
            clean = ctx.gallery.embeddings[rows]
            d = np.linalg.norm(pred[:, None] - clean[None], axis=2)
            ctx.cache[key] = impostor_threshold(d[~np.eye(len(d), dtype=bool)], ctx.fmr)
        return ctx.cache[key]

    def attack(self, kind, strengths, probes, ctx):
        if kind not in self.model.kinds:
            return []
        missing = too_few_candidates(ctx, ordered=True)
        if missing:
            return [{**_row(kind, s, self.model.name, "learned: obscured face -> clean embedding", "learned", s),
                     "distance": math.nan, "threshold": math.nan, "rank1": False, "status": missing}
                    for s in strengths]
        pred = self.model.predict(list(probes), kind, [float(s) for s in strengths])
        rows = []
        for k, s in enumerate(strengths):
            row = _row(kind, s, self.model.name, "learned: obscured face -> clean embedding", "learned", s)
            row.update(_match(ctx, pred[k], self._threshold(kind, float(s), ctx)))
            rows.append(row)
        return rows


# ----------------------------------------------------------------------------------------------------------------
# Defaults: the restore attacker's restorers, the built-in candidates, the context of one face, every attacker


def default_restorers(kinds: Sequence[str], thorough: bool = False, extra: Mapping[str, Mapping] | None = None
                      ) -> dict[str, dict[str, tuple[object, float | None]]]:
    """The restore attacker's restorers per obscuring kind, each with the strength it is told (``None``: the
    sweep's strength).

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


def default_fill_attackers(disk_cache: bool = True) -> list:
    """The attacker of a face filled with one colour: the parrot, which compares it with the candidates filled
    the same way (they all tie: nobody is identified).

    A filled crop is the same for every person. Restoring it and matching the result against clean photos
    points at whichever gallery photo happens to be nearest to a flat colour (the darkest face, for black) --
    the same answer for everyone, which identifies nobody even when that photo is the person's; counting it
    would only add chance hits. The independent dlib check still runs on the whole output photo.
    """
    return [ParrotAttacker(disk_cache)]


def default_attackers(kinds: Sequence[str], *, plan: dict | None = None, thorough: bool = False,
                      learned: bool = True, unknown_kernel: bool = True, disk_cache: bool = True) -> list:
    """Every attacker: restore (every restorer, ``plan`` or :func:`audit.safety.default_restorers`), parrot,
    unknown kernel (blind estimator) and learned (the shipped :func:`deblur.train.attacker.load_attacker`).

    Raises:
        FileNotFoundError / ValueError: when the learned attacker's weights are missing or altered (no silent
            fallback: pass ``learned=False`` to leave it out knowingly).
    """
    out = [RestoreAttacker(plan if plan is not None else default_restorers(list(kinds), thorough)),
           ParrotAttacker(disk_cache)]
    if unknown_kernel:
        out.append(UnknownKernelAttacker(estimate))
    if learned:
        from deblur.train.attacker import load_attacker  # torch: only when an attacker is built, not at import

        out.append(LearnedAttacker(load_attacker()))
    return out
