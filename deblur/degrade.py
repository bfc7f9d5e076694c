"""The three degradations of the reference study, as pure functions.

Every function takes and returns an ``HxWx3`` float32 image in ``[0, 1]``. The same functions make the
training data, the playground's degraded images and the audit's inputs, so a "σ=4 blur" means the same
thing everywhere.

Strengths are stated in pixels of the image they are applied to (for the built-in set: the 128-px face
crop):

- ``gaussian``: standard deviation σ of an isotropic Gaussian kernel (radius ``ceil(4σ)``).
- ``pixelate``: side ``n`` of the square blocks; blocks are tiled from the top-left corner and a partial
  block at the right/bottom edge is replaced by the mean of the pixels it actually covers.
- ``motion``: length ``n`` of a horizontal box kernel with ``n`` taps of ``1/n`` (centred; for even
  ``n`` the extra tap lies on the left, i.e. the kernel covers ``x - n//2 … x + (n-1)//2``).

Blurs use reflect padding at the image border. Randomness (e.g. random strengths for training) only
enters through an explicit ``np.random.Generator``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy import ndimage

from deblur.strengths import STRENGTHS, check_strength

__all__ = [
    "DEGRADATIONS",
    "NOISE_SIGMA",
    "as_image",
    "block_means",
    "degrade",
    "gaussian",
    "gaussian_psf",
    "motion",
    "motion_psf",
    "pixelate",
    "pixelate_noise",
    "psf",
    "quantize",
    "random_strength",
    "solid_fill",
    "to_uint8",
]


def as_image(img: np.ndarray, *, name: str = "image") -> np.ndarray:
    """Validate an image and convert it to ``HxWx3`` float32 in ``[0, 1]``.

    Accepts uint8 (0–255), uint16 (0–65535), bool or float images; grayscale (``HxW`` or ``HxWx1``) is
    repeated to three channels and an alpha channel (``HxWx4``) is dropped after compositing on white
    (transparent areas become white, as most viewers show them).

    Raises:
        TypeError: if ``img`` is not a numpy array or has an unsupported dtype.
        ValueError: if it is empty, has the wrong shape, or holds values outside ``[0, 1]`` / NaN.
    """
    if not isinstance(img, np.ndarray):
        raise TypeError(f"{name} must be a numpy array (HxWx3), got {type(img).__name__}")
    if img.size == 0:
        raise ValueError(f"{name} is empty (shape {img.shape})")
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3 or img.shape[2] not in (1, 3, 4):
        raise ValueError(f"{name} must be HxW, HxWx1, HxWx3 or HxWx4, got shape {img.shape}")
    if img.dtype == np.uint8:
        out = img.astype(np.float32) / 255.0
    elif img.dtype == np.uint16:
        out = img.astype(np.float32) / 65535.0
    elif img.dtype == np.bool_:
        out = img.astype(np.float32)
    elif np.issubdtype(img.dtype, np.floating):
        out = img.astype(np.float32, copy=True)
        if not np.isfinite(out).all():
            raise ValueError(f"{name} contains NaN or infinite values")
        lo, hi = float(out.min()), float(out.max())
        if lo < -1e-6 or hi > 1 + 1e-6:
            raise ValueError(
                f"{name} is float with values in [{lo:.3g}, {hi:.3g}]; expected [0, 1] (divide uint8 data by 255)"
            )
        np.clip(out, 0.0, 1.0, out=out)
    else:
        raise TypeError(f"{name} has unsupported dtype {img.dtype}; use uint8 or float32 in [0, 1]")
    if out.shape[2] == 1:
        out = np.repeat(out, 3, axis=2)
    elif out.shape[2] == 4:
        alpha = out[:, :, 3:4]
        out = out[:, :, :3] * alpha + (1.0 - alpha)
    return np.ascontiguousarray(out, dtype=np.float32)


def gaussian_psf(sigma: float) -> np.ndarray:
    """Normalised 2-D Gaussian kernel of standard deviation ``sigma`` and radius ``ceil(4 sigma)``."""
    sigma = check_strength("gaussian", sigma)
    if sigma == 0:
        return np.ones((1, 1), np.float32)
    radius = max(1, math.ceil(4 * sigma))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-(x**2) / (2 * sigma**2))
    k = np.outer(g, g)
    return (k / k.sum()).astype(np.float32)


def motion_psf(length: int) -> np.ndarray:
    """Horizontal box kernel of ``length`` taps of ``1/length``, shape ``(1, length)``."""
    n = int(check_strength("motion", length))
    return np.full((1, n), 1.0 / n, np.float32)


def _convolve(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    # ndimage.correlate == convolution for our symmetric kernels; the motion kernel is a box, so its
    # flip only moves the even-length centre, which the module docstring states.
    out = ndimage.correlate(img, kernel[:, :, None].astype(np.float32), mode="reflect")
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def gaussian(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur with standard deviation ``sigma`` (pixels); ``sigma=0`` returns a copy.

    The result equals correlation with :func:`gaussian_psf` (reflect border); it is computed as two 1-D
    passes because that kernel is the outer product of one normalised 1-D Gaussian (10× faster at σ≥8).
    """
    img = as_image(img)
    kernel = gaussian_psf(sigma)
    if kernel.size == 1:
        return img.copy()
    k1 = kernel.astype(np.float64).sum(axis=0).astype(np.float32)
    out = ndimage.correlate1d(img, k1, axis=0, mode="reflect")
    out = ndimage.correlate1d(out, k1, axis=1, mode="reflect")
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def motion(img: np.ndarray, length: int) -> np.ndarray:
    """Horizontal motion blur: convolution with a ``1 x length`` kernel of ``1/length``."""
    img = as_image(img)
    kernel = motion_psf(length)
    return img.copy() if kernel.size == 1 else _convolve(img, kernel)


def block_means(img: np.ndarray, block: int) -> np.ndarray:
    """The mean colour of every ``block x block`` tile from the top-left (partial edge tiles included).

    The one block mean of pixelation, its noisy variant and the classical bicubic restorer.

    Returns:
        ``ceil(H/block) x ceil(W/block) x C`` float32 array.
    """
    h, w = img.shape[:2]
    rows, cols = np.arange(0, h, block), np.arange(0, w, block)
    sums = np.add.reduceat(np.add.reduceat(img.astype(np.float64), rows, axis=0), cols, axis=1)
    counts = np.outer(np.diff(np.append(rows, h)), np.diff(np.append(cols, w)))[:, :, None]
    return (sums / counts).astype(np.float32)


def _expand_blocks(grid: np.ndarray, block: int, shape: tuple[int, int]) -> np.ndarray:
    h, w = shape
    return np.repeat(np.repeat(grid, block, axis=0)[:h], block, axis=1)[:, :w]


def pixelate(img: np.ndarray, block: int) -> np.ndarray:
    """Replace every ``block x block`` tile (from the top-left) by its mean colour.

    Partial tiles at the right and bottom edges are replaced by the mean of the pixels they cover, so
    an ``H x W`` image keeps ``ceil(H/block) x ceil(W/block)`` distinct colours.
    """
    img = as_image(img)
    n = int(check_strength("pixelate", block))
    if n == 1:
        return img.copy()
    return _expand_blocks(block_means(img, n), n, img.shape[:2])


DEGRADATIONS: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "gaussian": gaussian,
    "pixelate": pixelate,
    "motion": motion,
}


def _check_kind(kind: str) -> None:
    if kind not in DEGRADATIONS:
        raise ValueError(f"unknown degradation {kind!r}; choose one of {sorted(DEGRADATIONS)}")


def psf(kind: str, strength: float) -> np.ndarray:
    """The blur kernel of a convolutional degradation (``gaussian`` or ``motion``).

    Raises:
        ValueError: for ``pixelate`` (block averaging is not a convolution) or an unknown kind.
    """
    _check_kind(kind)
    if kind == "pixelate":
        raise ValueError("pixelation is not a convolution and has no PSF; restore it by interpolation")
    return gaussian_psf(strength) if kind == "gaussian" else motion_psf(int(strength))


def degrade(
    img: np.ndarray, kind: str, strength: float, box: tuple[int, int, int, int] | None = None
) -> np.ndarray:
    """Apply degradation ``kind`` at ``strength`` to the whole image or only inside ``box``.

    Args:
        img: image, anything :func:`as_image` accepts.
        kind: ``"gaussian"``, ``"pixelate"`` or ``"motion"``.
        strength: σ, block size or kernel length in pixels (see :data:`STRENGTHS`).
        box: optional ``(x0, y0, x1, y1)`` face box (pixel corners, exclusive end) as the study degraded
            the face region. Blurs use the real surroundings of the box; pixel blocks start at its
            top-left corner.

    Returns:
        The degraded ``HxWx3`` float32 image.
    """
    _check_kind(kind)
    img = as_image(img)
    fn = DEGRADATIONS[kind]
    if box is None:
        return fn(img, strength)
    h, w = img.shape[:2]
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"box {box} does not overlap the {w}x{h} image")
    out = img.copy()
    if kind == "pixelate":
        out[y0:y1, x0:x1] = fn(img[y0:y1, x0:x1], strength)
    else:
        out[y0:y1, x0:x1] = fn(img, strength)[y0:y1, x0:x1]
    return out


def to_uint8(img: np.ndarray) -> np.ndarray:
    """An image (anything :func:`as_image` accepts) as ``HxWx3`` uint8, rounded to the nearest level."""
    return (as_image(img) * 255.0 + 0.5).astype(np.uint8)


def quantize(img: np.ndarray) -> np.ndarray:
    """Round to 8 bits and back, as saving a degraded photo as PNG/JPEG does."""
    return (np.round(as_image(img) * 255.0) / 255.0).astype(np.float32)


def random_strength(kind: str, rng: np.random.Generator, low: float | None = None, high: float | None = None) -> float:
    """Draw a strength uniformly from ``[low, high]`` (defaults: the offered range) with ``rng``."""
    _check_kind(kind)
    if not isinstance(rng, np.random.Generator):
        raise TypeError("rng must be a numpy.random.Generator (np.random.default_rng(seed))")
    spec = STRENGTHS[kind]
    lo = spec.low if low is None else check_strength(kind, low)
    hi = spec.high if high is None else check_strength(kind, high)
    if hi < lo:
        raise ValueError(f"strength range [{lo}, {hi}] is empty")
    if spec.integer:
        return float(rng.integers(int(lo), int(hi) + 1))
    return float(rng.uniform(lo, hi))


# ---------------------------------------------------------------------------------------------------------------
# Non-invertible obscuring ("Is this blur safe?" compares them with the blurs)

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
    the information a known-block-size restorer needs; the mean of a block cannot be recovered from it (in
    the spirit of Fan's differentially private pixelisation, 2018).

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
    n = int(check_strength("pixelate", block))
    grid = block_means(img, n)
    grid = np.clip(grid + rng.normal(0.0, sigma, grid.shape).astype(np.float32), 0.0, 1.0)
    return _expand_blocks(grid, n, img.shape[:2]).astype(np.float32)
