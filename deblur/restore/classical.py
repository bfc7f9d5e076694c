"""Classical, non-blind baselines: Wiener and Richardson–Lucy deconvolution, bicubic of the block grid.

Every restorer here is told the strength (``uses_strength=True``), i.e. it knows the exact kernel
:func:`deblur.degrade.psf` or block size that made the image. That makes them strong baselines on our
data (see ``docs/ASSETS.md``), and the honest comparison point for the learned models.

Boundaries. :func:`deblur.degrade.gaussian` and :func:`~deblur.degrade.motion` blur with reflect
(half-sample symmetric) boundaries. We therefore pad by mirroring the whole image (``2H x 2W``, more
mirror periods for kernels larger than that): the mirrored image is periodic *and* continuous, so the
FFT's circular model has no wrap-around edge to taper, and for a symmetric kernel (every Gaussian, odd
motion lengths) circular convolution of the mirrored clean image reproduces the degradation exactly.
That is at least 2x the kernel radius of padding on every side for any kernel that fits the image.

Wiener. ``skimage.restoration.wiener`` with its default Laplacian regulariser smears a 15-px box blur
into stripes (~19 dB). We use the identity regulariser (``reg`` = a delta), i.e.
``X = conj(H) Y / (|H|^2 + balance)``, computed with numpy's real FFT on all three channels at once
(a test checks it equals ``skimage.restoration.wiener(..., reg=delta)`` on the same padded image).
``balance`` was tuned per strength on 12 built-in test faces degraded and rounded to 8 bits; see
:data:`WIENER_BALANCE` for the values and the measurement. (Those 12 faces are also among the 200 of the
evaluation table: one parameter per strength, so the leak is small, but it is there.)

Richardson–Lucy. The textbook multiplicative update on the same mirror-periodic image (scikit-image's
``richardson_lucy`` got *worse* with iterations on box blurs because of its zero boundary, see
:func:`richardson_lucy`). Slower (~2 ms per iteration per 128² face) but robust.

Pixelation. The block grid is rebuilt with one sample per block (the block's mean; partial blocks at the
right/bottom edge are one sample each, as :func:`deblur.degrade.pixelate` makes them), each sample is
placed at the centre of the pixels its block covers, and the grid is interpolated bicubically
(``cv2.remap``, Keys a=-0.75) back to the image size. Never the blocky image itself.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
from scipy import fft

from deblur.degrade import _check_kind, as_image, block_means, psf
from deblur.strengths import STRENGTHS, check_strength

__all__ = [
    "RL_ITERATIONS",
    "WIENER_BALANCE",
    "BicubicRestorer",
    "ClassicalRestorer",
    "NoRestorer",
    "RichardsonLucyRestorer",
    "WienerRestorer",
    "bicubic_from_blocks",
    "classical_estimate",
    "classical_restorers",
    "richardson_lucy",
    "wiener",
    "wiener_balance",
]

# Wiener balance per strength, tuned on 12 built-in test faces (128², degraded, rounded to 8 bits) over
# balance in {1e-5, 3e-5, ..., 1e-2}; mean PSNR at the best value: gaussian σ1 44.9, σ2 42.7, σ3 37.8,
# σ4 34.2, σ6 29.9, σ8 27.7; motion 3: 47.2, 9: 39.2, 15: 35.7, 21: 33.8, 31: 32.9. The optimum falls
# steeply with σ: a wide Gaussian's transfer function drops so fast that little band is left where noise
# (the 1/255 rounding) competes with signal, so a small balance recovers more detail without ringing;
# a narrow one has a long weak tail where a small balance amplifies rounding noise everywhere.
# Between the tabulated strengths log10(balance) is interpolated linearly; outside, the end value.
WIENER_BALANCE: dict[str, dict[float, float]] = {
    "gaussian": {1.0: 1e-2, 2.0: 3e-3, 3.0: 3e-4, 4.0: 1e-4, 6.0: 3e-5, 8.0: 1e-5},
    "motion": {3.0: 3e-3, 15.0: 3e-3, 21.0: 1e-3, 31.0: 1e-3},
}
# RL keeps improving slowly with iterations on our faces (6 test faces, gaussian σ4: 29.7 dB at 30,
# 30.4 at 60; motion 15: 32.1 at 30, 33.5 at 60); 50 is a cost/quality compromise (~110 ms per face).
RL_ITERATIONS: dict[str, int] = {"gaussian": 50, "motion": 50}


def wiener_balance(kind: str, strength: float) -> float:
    """The tuned Wiener ``balance`` for a blur ``kind`` at ``strength`` (see :data:`WIENER_BALANCE`)."""
    table = WIENER_BALANCE[kind]
    xs = np.array(sorted(table), np.float64)
    ys = np.log10([table[x] for x in xs])
    return float(10 ** np.interp(float(strength), xs, ys))


def _is_identity(kind: str, strength: float) -> bool:
    return float(strength) == float(STRENGTHS[kind].identity)


def _require_strength(name: str, kind: str, strength: float | None) -> float:
    if strength is None:
        raise ValueError(
            f"{name} is non-blind: pass the {kind} strength ({STRENGTHS[kind].name}) that degraded the image"
        )
    return check_strength(kind, strength)


def _mirror_periodic(img: np.ndarray, min_shape: tuple[int, int]) -> np.ndarray:
    """Symmetric extension to a whole number of mirror periods covering at least ``min_shape``."""
    h, w = img.shape[:2]
    ph = 2 * h * max(1, math.ceil(min_shape[0] / (2 * h)))
    pw = 2 * w * max(1, math.ceil(min_shape[1] / (2 * w)))
    return np.pad(img, ((0, ph - h), (0, pw - w), (0, 0)), mode="symmetric")


def _transfer(kernel: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """rFFT transfer function of ``ndimage.correlate(., kernel)`` (origin at the kernel centre) on ``shape``."""
    kh, kw = kernel.shape
    placed = np.zeros(shape, np.float64)
    placed[:kh, :kw] = kernel
    placed = np.roll(placed, (-(kh // 2), -(kw // 2)), axis=(0, 1))
    # correlate(x, k) == circular convolution with k flipped, whose transfer function is conj(FFT(k)).
    return np.conj(np.fft.rfft2(placed))


def wiener(img: np.ndarray, kernel: np.ndarray, balance: float) -> np.ndarray:
    """Wiener deconvolution with an identity regulariser, mirror-padded, clipped to ``[0, 1]``.

    Args:
        img: ``HxWx3`` float image blurred by ``kernel`` (correlation, reflect boundary).
        kernel: 2-D blur kernel summing to 1.
        balance: regularisation weight (noise-to-signal ratio); larger = smoother.

    Returns:
        The restored ``HxWx3`` float32 image.
    """
    h, w = img.shape[:2]
    ext = _mirror_periodic(img, (2 * kernel.shape[0], 2 * kernel.shape[1]))
    tf = _transfer(kernel, ext.shape[:2])
    spec = np.fft.rfft2(ext, axes=(0, 1))
    filt = (np.conj(tf) / (np.abs(tf) ** 2 + balance))[:, :, None]
    out = np.fft.irfft2(spec * filt, s=ext.shape[:2], axes=(0, 1))[:h, :w]
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def richardson_lucy(img: np.ndarray, kernel: np.ndarray, num_iter: int) -> np.ndarray:
    """Richardson–Lucy deconvolution on the mirror-periodic image, all channels at once.

    scikit-image's ``richardson_lucy`` convolves with zero boundaries (``fftconvolve(mode="same")``):
    with a 2x-radius reflect pad its boundary error grows inwards every iteration, and on a 15-px box
    blur mean PSNR *fell* from 28.2 dB (10 iterations) to 18.2 dB (80). The same multiplicative update
    on the mirror-periodic extension (the exact boundary model of our blur) rises to 33.5 dB at 60.

    Args:
        img: ``HxWx3`` float image blurred by ``kernel`` (correlation, reflect boundary).
        kernel: 2-D blur kernel summing to 1.
        num_iter: RL iterations; more = sharper (and slower: ~2 ms per iteration for a 128² face).

    Returns:
        The restored ``HxWx3`` float32 image.
    """
    h, w = img.shape[:2]
    observed = _mirror_periodic(img.astype(np.float32), (2 * kernel.shape[0], 2 * kernel.shape[1]))
    shape = observed.shape[:2]
    tf = _transfer(kernel, shape).astype(np.complex64)[:, :, None]
    tf_adjoint = np.conj(tf)

    def apply(x: np.ndarray, t: np.ndarray) -> np.ndarray:
        return fft.irfft2(fft.rfft2(x, axes=(0, 1)) * t, s=shape, axes=(0, 1))

    estimate = observed.copy()
    for _ in range(int(num_iter)):
        estimate *= apply(observed / np.maximum(apply(estimate, tf), 1e-6), tf_adjoint)
    return np.clip(estimate[:h, :w], 0.0, 1.0).astype(np.float32)


def _grid_coords(size: int, block: int) -> np.ndarray:
    """Fractional grid index of every pixel, piecewise linear between the centres of the blocks."""
    starts = np.arange(0, size, block)
    ends = np.minimum(starts + block, size)
    centres = (starts + ends - 1) / 2.0
    x = np.arange(size, dtype=np.float64)
    if len(centres) == 1:
        return np.zeros(size, np.float32)
    coords = np.interp(x, centres, np.arange(len(centres), dtype=np.float64))
    # extrapolate linearly beyond the first/last centre (np.interp clamps), so edge pixels keep the slope
    lo, hi = x < centres[0], x > centres[-1]
    coords[lo] = (x[lo] - centres[0]) / (centres[1] - centres[0])
    coords[hi] = len(centres) - 1 + (x[hi] - centres[-1]) / (centres[-1] - centres[-2])
    return coords.astype(np.float32)


def bicubic_from_blocks(grid: np.ndarray, block: int, shape: tuple[int, int]) -> np.ndarray:
    """Bicubic interpolation of a block grid back to ``shape`` with samples at the block centres."""
    h, w = shape
    gy, gx = _grid_coords(h, block), _grid_coords(w, block)
    map_x = np.broadcast_to(gx[None, :], (h, w)).astype(np.float32)
    map_y = np.broadcast_to(gy[:, None], (h, w)).astype(np.float32)
    out = cv2.remap(np.ascontiguousarray(grid, np.float32), map_x, map_y, cv2.INTER_CUBIC,
                    borderMode=cv2.BORDER_REPLICATE)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def classical_estimate(img: np.ndarray, kind: str, strength: float) -> np.ndarray:
    """The best fast classical estimate for a degradation, the starting point of the learned models.

    Chosen by mean PSNR on the held-out built-in test faces (``results/eval/eval.md``, 200 faces): Wiener
    (identity regulariser) beat Richardson–Lucy (50 iterations) at every evaluated strength (gaussian σ2/4/6:
    43.4/35.0/30.9 vs 41.9/31.7/27.8 dB; motion 9: 39.6 vs 39.2 dB) and is ~30x faster; pixelation uses the
    bicubic of the block grid. A few ms per 128² face.

    Args:
        img: degraded image, anything :func:`deblur.degrade.as_image` accepts.
        kind: ``"gaussian"``, ``"pixelate"`` or ``"motion"``.
        strength: the strength that degraded it (σ, block size, kernel length in pixels).

    Returns:
        ``HxWx3`` float32 in ``[0, 1]``; a copy of the input at the identity strength.
    """
    _check_kind(kind)
    img = as_image(img)
    strength = _require_strength("classical_estimate", kind, strength)
    if _is_identity(kind, strength):
        return img.copy()
    if kind == "pixelate":
        block = int(strength)
        return bicubic_from_blocks(block_means(img, block), block, img.shape[:2])
    return wiener(img, psf(kind, strength), wiener_balance(kind, strength))


class ClassicalRestorer:
    """Common part of the non-blind classical restorers (see ``docs/CONTRACTS.md``).

    Args:
        degradation: the one degradation this instance restores.
    """

    name = "classical"
    label = "classical"
    family = "classical"
    uses_strength = True
    supported: tuple[str, ...] = ()

    def __init__(self, degradation: str) -> None:
        _check_kind(degradation)
        if degradation not in self.supported:
            raise ValueError(f"{type(self).__name__} restores {self.supported}, not {degradation!r}")
        self.degradation = degradation
        self.degradations: tuple[str, ...] = (degradation,)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.degradation!r})"

    def _restore(self, img: np.ndarray, strength: float) -> np.ndarray:
        raise NotImplementedError

    def restore(self, img: np.ndarray, strength: float | None = None) -> np.ndarray:
        """Restore one image degraded at ``strength`` (required: these restorers are non-blind).

        Args:
            img: degraded image, anything :func:`deblur.degrade.as_image` accepts.
            strength: σ, block size or kernel length in pixels that degraded it.

        Returns:
            ``HxWx3`` float32 in ``[0, 1]`` of the input's size.

        Raises:
            ValueError: if ``strength`` is None or invalid for the degradation.
        """
        img = as_image(img)
        strength = _require_strength(self.name, self.degradation, strength)
        if _is_identity(self.degradation, strength):
            return img.copy()
        return self._restore(img, strength)

    def restore_batch(self, imgs: np.ndarray, strengths: Sequence[float] | None = None) -> np.ndarray:
        """Restore ``N x H x W x 3`` images, one strength per image (required).

        Args:
            imgs: batch of degraded images.
            strengths: one strength per image.

        Returns:
            ``N x H x W x 3`` float32.
        """
        if strengths is None:
            raise ValueError(f"{self.name} is non-blind: pass one {self.degradation} strength per image")
        if len(strengths) != len(imgs):
            raise ValueError(f"got {len(imgs)} images but {len(strengths)} strengths")
        return np.stack([self.restore(im, s) for im, s in zip(imgs, strengths, strict=True)]).astype(np.float32)


class WienerRestorer(ClassicalRestorer):
    """Non-blind Wiener deconvolution with an identity regulariser and the exact kernel.

    Args:
        degradation: ``"gaussian"`` or ``"motion"``.
        balance: fixed regularisation weight; by default the tuned per-strength :func:`wiener_balance`.
    """

    name = "wiener"
    label = "Wiener deconvolution (known kernel)"
    supported = ("gaussian", "motion")

    def __init__(self, degradation: str, balance: float | None = None) -> None:
        super().__init__(degradation)
        self.balance = None if balance is None else float(balance)

    def _restore(self, img: np.ndarray, strength: float) -> np.ndarray:
        balance = wiener_balance(self.degradation, strength) if self.balance is None else self.balance
        return wiener(img, psf(self.degradation, strength), balance)


class RichardsonLucyRestorer(ClassicalRestorer):
    """Non-blind Richardson–Lucy deconvolution (scikit-image) with the exact kernel.

    Args:
        degradation: ``"gaussian"`` or ``"motion"``.
        num_iter: iterations; defaults to the tuned :data:`RL_ITERATIONS`.
    """

    name = "richardson-lucy"
    label = "Richardson–Lucy deconvolution (known kernel)"
    supported = ("gaussian", "motion")

    def __init__(self, degradation: str, num_iter: int | None = None) -> None:
        super().__init__(degradation)
        self.num_iter = RL_ITERATIONS[degradation] if num_iter is None else int(num_iter)

    def _restore(self, img: np.ndarray, strength: float) -> np.ndarray:
        return richardson_lucy(img, psf(self.degradation, strength), self.num_iter)


class BicubicRestorer(ClassicalRestorer):
    """Bicubic interpolation of the block grid (one sample per block) back to the image size."""

    name = "bicubic"
    label = "Bicubic of the block grid (known block size)"
    supported = ("pixelate",)

    def __init__(self, degradation: str = "pixelate") -> None:
        super().__init__(degradation)

    def _restore(self, img: np.ndarray, strength: float) -> np.ndarray:
        block = int(strength)
        return bicubic_from_blocks(block_means(img, block), block, img.shape[:2])


class NoRestorer:
    """Returns the degraded input unchanged: the reference row of every comparison.

    Args:
        degradation: the degradation it stands for (all three if None).
    """

    name = "none"
    label = "No restoration (degraded input)"
    family = "none"
    uses_strength = False

    def __init__(self, degradation: str | None = None) -> None:
        if degradation is not None:
            _check_kind(degradation)
        self.degradations: tuple[str, ...] = (degradation,) if degradation else tuple(STRENGTHS)

    def __repr__(self) -> str:
        return f"NoRestorer({self.degradations!r})"

    def restore(self, img: np.ndarray, strength: float | None = None) -> np.ndarray:
        """Return a float32 copy of ``img`` (``strength`` is ignored)."""
        return as_image(img).copy()

    def restore_batch(self, imgs: np.ndarray, strengths: Sequence[float] | None = None) -> np.ndarray:
        """Return float32 copies of ``imgs`` (``strengths`` are ignored)."""
        return np.stack([as_image(im) for im in imgs]).astype(np.float32)


def classical_restorers(degradation: str) -> dict[str, ClassicalRestorer | NoRestorer]:
    """The classical baselines for one degradation plus ``"none"``, keyed by restorer name.

    Args:
        degradation: ``"gaussian"``, ``"pixelate"`` or ``"motion"``.

    Returns:
        ``{"wiener": ..., "richardson-lucy": ..., "none": ...}`` for the blurs,
        ``{"bicubic": ..., "none": ...}`` for pixelation.
    """
    _check_kind(degradation)
    if degradation == "pixelate":
        found: list = [BicubicRestorer(degradation)]
    else:
        found = [WienerRestorer(degradation), RichardsonLucyRestorer(degradation)]
    found.append(NoRestorer(degradation))
    return {r.name: r for r in found}
