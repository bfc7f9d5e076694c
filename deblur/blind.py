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
from dataclasses import dataclass

import cv2
import numpy as np

from deblur.degrade import as_image
from deblur.estimate import Estimate, crop_scale, estimate
from deblur.restore.classical import classical_estimate

__all__ = ["BlindReading", "EstimatedStrength", "cached_estimate", "estimate_photo", "with_estimated"]

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


PHOTO_REGION_MAX = 768  # estimate on at most this many photo pixels per side (the face region, else the centre)


@dataclass(frozen=True)
class BlindReading:
    """The estimate for an uploaded, already degraded photo, in the photo's pixels and the processed image's.

    Attributes:
        photo: the estimate in pixels of the uploaded photo.
        processed: the same estimate in pixels of the image the restorers see (face crop or shrunk photo).
        scale: processed pixels per photo pixel.
        region: ``(x0, y0, x1, y1)`` of the photo the estimate was made on.
    """

    photo: Estimate
    processed: Estimate
    scale: float
    region: tuple[int, int, int, int]

    def text(self, what: str = "the processed image") -> str:
        """One sentence for the user, e.g. "motion blur of 14.9 ± 0.6 px in your photo = 10.4 ± 0.4 px in ..."."""
        names = {"gaussian": "Gaussian blur, σ", "pixelate": "pixelation, blocks of", "motion": "horizontal motion "
                 "blur, length"}
        p, q = self.photo, self.processed
        sure = max(p.probabilities.values())
        return (f"Estimated from your photo: **{names[p.kind]} {p.strength:.1f} ± {p.uncertainty:.1f} px** of your "
                f"photo = {q.strength:.1f} ± {q.uncertainty:.1f} px of {what} (kind probability {sure:.0%}; "
                "deblur.estimate, accuracy in results/estimate/). The restorers told the strength were given "
                f"{q.for_restorer():g} px; untick 'Estimate' to set it yourself.")


def _region(photo_shape: tuple[int, int], matrix: np.ndarray | None, size: int) -> tuple[int, int, int, int]:
    h, w = photo_shape
    if matrix is not None:  # the footprint of the crop square in the photo (axis-aligned box around it)
        inv = cv2.invertAffineTransform(np.asarray(matrix, np.float64))
        corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]]) @ inv.T
        x0, y0 = np.floor(corners.min(axis=0)).astype(int)
        x1, y1 = np.ceil(corners.max(axis=0)).astype(int)
    else:
        x0, y0, x1, y1 = 0, 0, w, h
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if x1 - x0 > PHOTO_REGION_MAX:  # keep the centre: the cost grows with the area
        c = (x0 + x1) // 2
        x0, x1 = c - PHOTO_REGION_MAX // 2, c + PHOTO_REGION_MAX // 2
    if y1 - y0 > PHOTO_REGION_MAX:
        c = (y0 + y1) // 2
        y0, y1 = c - PHOTO_REGION_MAX // 2, c + PHOTO_REGION_MAX // 2
    return int(x0), int(y0), int(x1), int(y1)


def estimate_photo(photo: np.ndarray, crop_matrix: np.ndarray | None = None, processed_scale: float | None = None,
                   crop_size: int = 128) -> BlindReading:
    """Estimate the degradation of an uploaded photo on its face region, in photo and processed pixels.

    Args:
        photo: the uploaded photo (anything :func:`deblur.degrade.as_image` accepts).
        crop_matrix: the ``2x3`` photo -> crop map of the face crop (:class:`deblur.faces.FaceCrop.matrix`);
            the estimate is made on the crop's footprint in the photo, in photo pixels (the crop's rotation and
            resampling would change the blur), then scaled by the crop's scale.
        processed_scale: processed pixels per photo pixel when there is no crop (whole-image mode: the shrink).
        crop_size: side of the crop in pixels.

    Raises:
        ValueError: a region under 32 px (the estimator's minimum).
    """
    photo = as_image(photo)
    matrix = None if crop_matrix is None else np.asarray(crop_matrix, np.float64)
    region = _region(photo.shape[:2], matrix, crop_size)
    x0, y0, x1, y1 = region
    est = estimate(photo[y0:y1, x0:x1])
    scale = crop_scale(matrix) if matrix is not None else float(processed_scale or 1.0)
    return BlindReading(est, est.scaled(scale), scale, region)

