"""The blind pipeline: estimate the degradation from the image, then restore with a non-blind restorer.

A non-blind restorer (Wiener, Richardson–Lucy, bicubic of the block grid, our U-Nets) is told the true
strength in the evaluation table. Someone holding only a blurred photo does not know it. :class:`EstimatedStrength`
wraps such a restorer so it is told :func:`deblur.estimate.estimate`'s answer instead, per image: the
"estimated strength" rows of ``python -m deblur.train.evaluate`` and the audit's unknown-kernel attacker.

When the estimator names another kind than the restorer's (about 1–9% of images, ``results/estimate/``),
the image goes to the classical restorer of the *estimated* kind at the estimated strength — what a blind
user of the tool would get — and :attr:`EstimatedStrength.kind_misses` counts it.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from deblur.degrade import as_image
from deblur.estimate import Estimate, estimate
from deblur.restore.classical import classical_estimate

__all__ = ["EstimatedStrength", "cached_estimate", "with_estimated"]

_CACHE: OrderedDict[str, Estimate] = OrderedDict()
_CACHE_SIZE = 4096


def cached_estimate(img: np.ndarray) -> Estimate:
    """:func:`deblur.estimate.estimate`, remembered by the image's bytes (several restorers share one estimate)."""
    img = as_image(img)
    key = hashlib.sha1(img.tobytes() + str(img.shape).encode()).hexdigest()
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    est = estimate(img)
    _CACHE[key] = est
    if len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return est


class EstimatedStrength:
    """A non-blind restorer told the estimated strength instead of the true one (so, blind).

    Args:
        inner: a restorer with ``uses_strength=True`` for one degradation.
        kind: that degradation.
    """

    uses_strength = False

    def __init__(self, inner, kind: str) -> None:
        if not getattr(inner, "uses_strength", False):
            raise ValueError(f"{inner!r} is already blind; only non-blind restorers need an estimated strength")
        self.inner = inner
        self.kind = kind
        self.degradation = kind
        self.degradations = (kind,)
        self.name = f"{inner.name} (estimated strength)"
        self.label = f"{getattr(inner, 'label', inner.name)}, told the estimated strength"
        self.family = f"{inner.family}, estimated strength"
        self.kind_misses = 0
        self.estimates: list[Estimate] = []

    def __repr__(self) -> str:
        return f"EstimatedStrength({self.inner!r})"

    def restore(self, img: np.ndarray, strength: float | None = None) -> np.ndarray:
        """Restore ``img``; ``strength`` is ignored (this pipeline does not know it)."""
        img = as_image(img)
        est = cached_estimate(img)
        self.estimates.append(est)
        if est.kind != self.kind:
            self.kind_misses += 1
            return classical_estimate(img, est.kind, est.for_restorer())
        return self.inner.restore(img, est.for_restorer())

    def restore_batch(self, imgs: np.ndarray, strengths: Sequence[float] | None = None) -> np.ndarray:
        """Restore ``N x H x W x 3`` images, each with its own estimate."""
        return np.stack([self.restore(im) for im in imgs]).astype(np.float32)


def with_estimated(restorers: dict, kind: str) -> dict:
    """``{name (estimated strength): EstimatedStrength}`` for every non-blind restorer in ``restorers``."""
    wrapped = [EstimatedStrength(r, kind) for r in restorers.values() if getattr(r, "uses_strength", False)]
    return {w.name: w for w in wrapped}
