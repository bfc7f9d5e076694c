"""Obscuring operations the safety sweep applies: the invertible degradations plus two non-invertible ones.

``fill`` replaces the crop by its mean colour (or black); ``pixelate_noise`` adds seeded Gaussian noise to each
block mean (in the spirit of Fan's differentially private pixelisation, 2018). Every output is rounded to 8 bits.
"""

from __future__ import annotations

import math

import numpy as np

from deblur.classical import block_grid
from deblur.degrade import DEGRADATIONS, _check_strength, as_image, degrade, quantize

__all__ = ["KINDS", "NOISE_SIGMA", "NONINVERTIBLE", "check_kind", "obscure", "pixelate_noise", "solid_fill"]


NONINVERTIBLE = ("fill", "pixelate_noise")
KINDS = (*DEGRADATIONS, *NONINVERTIBLE)
NOISE_SIGMA = 0.25  # per-block noise of pixelate_noise, in [0, 1] intensity units (≈64 grey levels)


def solid_fill(img: np.ndarray, colour: str = "mean") -> np.ndarray:
    """Replace the whole face crop by one colour: its mean colour (``"mean"``) or ``"black"``.

    Raises:
        ValueError: for another ``colour``.
    """
    img = as_image(img)
    if colour == "mean":
        return np.broadcast_to(img.mean(axis=(0, 1), dtype=np.float64).astype(np.float32), img.shape).copy()
    if colour == "black":
        return np.zeros_like(img)
    raise ValueError(f"fill colour must be 'mean' or 'black', got {colour!r}")


def pixelate_noise(img: np.ndarray, block: int, rng: np.random.Generator, sigma: float = NOISE_SIGMA) -> np.ndarray:
    """Pixelate, then add Gaussian noise of std ``sigma`` to every block colour (one draw per block and channel).

    Noise on the block means — not on pixels, which the block average of a restorer would cancel — destroys
    the information a known-block-size restorer needs; the mean of a block cannot be recovered from it.

    Args:
        img: face crop.
        block: block side in pixels.
        rng: the only source of randomness (``np.random.default_rng(seed)``).
        sigma: noise std in ``[0, 1]`` intensity units.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError("rng must be a numpy.random.Generator (np.random.default_rng(seed))")
    if not (math.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"noise sigma must be >= 0, got {sigma}")
    img = as_image(img)
    n = int(_check_strength("pixelate", block))
    grid = block_grid(img, n)
    grid = np.clip(grid + rng.normal(0.0, sigma, grid.shape).astype(np.float32), 0.0, 1.0)
    h, w = img.shape[:2]
    return np.repeat(np.repeat(grid, n, axis=0)[:h], n, axis=1)[:, :w].astype(np.float32)


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
        out = pixelate_noise(img, int(_check_strength("pixelate", strength)),
                             np.random.default_rng([seed, int(strength)]), noise)
    else:
        out = degrade(img, kind, strength)
    return quantize(out)
