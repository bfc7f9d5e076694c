"""Obscuring kinds the safety sweep applies: the invertible degradations plus two non-invertible ones.

``fill`` replaces the crop by its mean colour (or black); ``pixelate_noise`` adds seeded Gaussian noise to each
block mean. Both operations live in :mod:`deblur.degrade` (:func:`~deblur.degrade.solid_fill`,
:func:`~deblur.degrade.pixelate_noise`); :func:`obscure` dispatches by kind and rounds every output to 8 bits.
"""

from __future__ import annotations

import numpy as np

from deblur.degrade import DEGRADATIONS, NOISE_SIGMA, degrade, pixelate_noise, quantize, solid_fill
from deblur.strengths import OBSCURING_KINDS, check_strength

__all__ = ["KINDS", "NONINVERTIBLE", "check_kind", "obscure"]


NONINVERTIBLE = tuple(OBSCURING_KINDS)
KINDS = (*DEGRADATIONS, *NONINVERTIBLE)


def check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown degradation {kind!r}; choose one of {list(KINDS)}")



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
    check_kind(kind)
    if kind == "fill":
        out = solid_fill(img, fill)
    elif kind == "pixelate_noise":
        out = pixelate_noise(img, int(check_strength("pixelate", strength)),
                             np.random.default_rng([seed, int(strength)]), noise)
    else:
        out = degrade(img, kind, strength)
    return quantize(out)
