"""Blind estimation: which degradation made an image, and how strong, from the degraded image alone.

``python -m deblur.estimate IMAGE`` prints JSON; :func:`estimate` is the public API (playground, evaluation,
the audit's "unknown kernel" attacker)::

    >>> est = estimate(img)          # HxWx3, any size >= 32 px
    >>> est.kind, est.strength, est.uncertainty, est.offset
    ('pixelate', 8.0, 0.1, (0.0, 0.0))

Strengths are in pixels of the image given (σ for ``gaussian``, block side for ``pixelate``, horizontal
kernel length for ``motion``, as :mod:`deblur.degrade` defines them); :meth:`Estimate.scaled` converts them
to another pixel grid (e.g. photo -> 128-px face crop).

How (two parts):

1. **Pixelation from the block structure** (analytic, :func:`block_grid`). The mean absolute difference
   between neighbouring columns (rows) is a spike train at the block edges. For every candidate period
   ``p`` (not only whole pixels: a resized pixelation has blocks of 6.25 px) the profile is folded modulo
   ``p`` and we measure the largest fraction of its mass within ±0.6 px of one phase, minus what a
   structureless profile would give there. The best ``p`` gives the block size, its phase the grid offset.
   JPEG leaves the spikes (weaker) and resizing widens them to ~2 px; both are covered by the tolerance.
2. **Kind and blur strength from a small trained network** (:data:`MODEL_PATH`, model card beside it).
   Features (:func:`features`): horizontal and vertical power spectra of the image made periodic by
   mirroring (no window, no edge artefacts), their cepstra (a box blur of length ``L`` puts periodic zeros
   in the horizontal spectrum, hence a negative cepstral peak at lag ``L``), edge-slope ratios (gradient
   over local contrast: a step blurred with σ has slope ``1/(σ√2π)`` of its contrast), the block-grid
   scores, and the fraction of exactly flat neighbours. A 2-hidden-layer MLP (numpy inference) outputs
   the kind probabilities and, per kind, the mean and standard deviation of ``log(1 + strength)``;
   ``uncertainty`` is that standard deviation mapped back to pixels. It was trained on generated faces and
   crops of scikit-image's natural photographs with random resizing, noise and JPEG after the blur
   (``python -m deblur.estimate_fit``); accuracy on held-out faces and real photos: ``results/estimate/``.

Limits: one degradation per image, motion only horizontal (the direction :mod:`deblur.degrade` uses), a
uniform blur over the whole image. Gaussian σ is the blur *added to* a photo that was sharp to begin with:
an already soft photo reads as slightly blurred.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from deblur.degrade import as_image
from deblur.faces import NoFaceError, face_crop
from deblur.io import ImageError, load_image
from deblur.strengths import STRENGTHS

__all__ = ["KINDS", "MODEL_PATH", "Estimate", "EstimatorError", "block_grid", "estimate", "features",
           "load_estimator", "refine_motion_length", "restorer_strength"]

KINDS = ("gaussian", "pixelate", "motion")
MODEL_PATH = Path(__file__).resolve().parent.parent / "weights" / "estimator" / "estimator.npz"
MIN_SIDE = 32
_FREQS = np.arange(129) / 256.0  # cycles per pixel, 0 .. 0.5
_LAGS = np.arange(2, 41)  # cepstral lags (px): motion lengths up to 40 px of the given image
_WINDOWS = (5, 9, 17, 33)  # local-contrast windows for the edge-slope features
_PROFILE_MAX = 256  # block-grid profiles use at most this many central columns/rows


class EstimatorError(RuntimeError):
    """The estimator's model file is missing, altered or unreadable."""


@dataclass(frozen=True)
class Estimate:
    """The estimator's answer for one image.

    Attributes:
        kind: ``gaussian``, ``pixelate`` or ``motion``.
        strength: σ / block side / kernel length in pixels of the image given.
        uncertainty: about one standard deviation of ``strength`` in the same pixels.
        offset: ``(x, y)`` of the first block's top-left corner modulo the block size (pixelation only; a
            grid that starts at the image corner, as :func:`deblur.degrade.pixelate` makes it, gives ``(0, 0)``).
        probabilities: the network's probability for each kind.
        grid_score: how strongly the image shows a block grid (0 = none, ~1 = clean pixelation).
        image_size: ``(height, width)`` of the image given.
    """

    kind: str
    strength: float
    uncertainty: float
    offset: tuple[float, float] | None
    probabilities: dict[str, float]
    grid_score: float
    image_size: tuple[int, int]

    def scaled(self, factor: float) -> Estimate:
        """The same estimate in a pixel grid ``factor`` times finer (e.g. photo px -> crop px)."""
        off = None if self.offset is None else (round(self.offset[0] * factor, 2), round(self.offset[1] * factor, 2))
        return Estimate(self.kind, round(self.strength * factor, 3), round(self.uncertainty * factor, 3), off,
                        self.probabilities, self.grid_score,
                        (round(self.image_size[0] * factor), round(self.image_size[1] * factor)))

    def for_restorer(self) -> float:
        """The strength as a non-blind restorer takes it (see :func:`restorer_strength`)."""
        return restorer_strength(self.kind, self.strength)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["offset"] = None if self.offset is None else list(self.offset)
        d["image_size"] = list(self.image_size)
        return d


def restorer_strength(kind: str, value: float) -> float:
    """A strength rounded and clipped to what :mod:`deblur.degrade` accepts for ``kind`` and the offered range.

    Gaussian σ to 0.1 px within ``[0, high]``; block size and motion length to whole pixels ``>= 1``.
    """
    spec = STRENGTHS[kind]
    if spec.integer:
        return float(min(max(1, round(value)), spec.high))
    return float(min(max(0.0, round(value, 1)), spec.high))


# ---------------------------------------------------------------------------------------------- block grid
def _profile(gray: np.ndarray, axis: int) -> np.ndarray:
    """Mean |difference| between neighbouring columns (axis=1) or rows (axis=0), central part only."""
    d = np.abs(np.diff(gray, axis=axis)).mean(axis=1 - axis)
    if len(d) > _PROFILE_MAX:
        start = (len(d) - _PROFILE_MAX) // 2
        return d[start:start + _PROFILE_MAX], start
    return d, 0


def _periods(n: int) -> np.ndarray:
    # fine enough that the comb drifts < 0.4 px over the profile: dp <= 0.4 p / n
    hi = max(2.0, min(40.0, n / 3.0))
    out, p = [], 2.0
    while p <= hi:
        out.append(p)
        p += max(0.004, 0.4 * p / n)
    return np.array(out)


def _fold(g: np.ndarray, periods: np.ndarray, bin_px: float) -> tuple[np.ndarray, np.ndarray]:
    """Window sums (about +-0.6 px, circular per period) of the profile folded modulo each period."""
    n, m = len(g), len(periods)
    nb = np.ceil(periods / bin_px).astype(int)  # phase bins per period
    k = round(0.6 / bin_px)
    width = int(nb.max()) + 2 * k
    x = np.arange(n, dtype=np.float64)
    b = np.minimum(np.floor(np.mod(x[None, :], periods[:, None]) / bin_px).astype(int), nb[:, None] - 1)
    rows = np.arange(m)[:, None] * width
    w = np.broadcast_to(g, b.shape)
    # each sample also lands in the wrapped copy of its bin, so a plain sliding window is circular
    lo, hi = b < k, b >= nb[:, None] - k
    flat = np.concatenate([(rows + b + k).ravel(), (rows + b + k + nb[:, None])[lo], (rows + b + k - nb[:, None])[hi]])
    wts = np.concatenate([w.ravel(), w[lo], w[hi]])
    hist = np.bincount(flat, wts, m * width).reshape(m, width)
    cs = np.concatenate([np.zeros((m, 1)), np.cumsum(hist, 1)], 1)
    window = np.full((m, width - 2 * k), -1.0)
    for kk in (k, k // 2):  # a narrower window for periods under 4 tolerances, so a 2-px grid's phases stay apart
        sel = (periods < 4 * k * bin_px) if kk != k else (periods >= 4 * k * bin_px)
        win = cs[sel, k + kk + 1: width - k + kk + 1] - cs[sel, k - kk: width - k - kk]
        window[sel] = win
    window[np.arange(width - 2 * k)[None, :] >= nb[:, None]] = -1.0
    return window, nb


@functools.lru_cache(maxsize=16)
def _uniform_window(n: int, bin_px: float) -> np.ndarray:
    """What a structureless profile captures at each period and phase (integer sampling makes it uneven)."""
    return _fold(np.full(n, 1.0 / n), _periods(n), bin_px)[0]


def _comb(profile: np.ndarray, bin_px: float = 0.25) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per candidate period: score and best phase of the folded profile (see module docstring)."""
    n = len(profile)
    total = float(profile.sum())
    periods = _periods(n)
    if total <= 0 or len(periods) == 0:
        return periods, np.zeros(len(periods)), np.zeros(len(periods))
    window, _ = _fold(profile / total, periods, bin_px)
    excess = window - _uniform_window(n, bin_px)
    best = excess.argmax(axis=1)
    rows = np.arange(len(periods))
    return periods, excess[rows, best], (best + 0.5) * bin_px


def _refine_grid(profile: np.ndarray, start: int, period: float, phase: float) -> tuple[float, float]:
    """Least-squares fit ``edge = offset + k * period`` to the profile's mass near the comb: (period, offset)."""
    # a difference spike at index j is the edge between pixels j and j+1: the next block starts at j + 1
    edges = np.arange(len(profile)) + start + 1.0
    centre = phase + start + 1.0
    k = np.round((edges - centre) / period)
    near = np.abs(edges - centre - k * period) <= 1.0
    w = profile[near]
    if near.sum() < 3 or w.sum() <= 0 or np.ptp(k[near]) < 1:
        return period, float(np.mod(centre, period))
    slope, intercept = np.polyfit(k[near], edges[near], 1, w=np.sqrt(w))
    if not 0.9 * period <= slope <= 1.1 * period:
        slope, intercept = period, centre
    return float(slope), float(np.mod(intercept, slope))


def block_grid(img: np.ndarray) -> dict:
    """Find a block grid: ``{"score", "block", "block_x", "block_y", "offset", "uncertainty"}``.

    ``score`` is the weaker axis's comb score (both axes must show the grid); ``block`` the mean of the two
    axes' periods in pixels; ``offset`` ``(x, y)`` where blocks start, modulo the block size.
    """
    gray = _luma(as_image(img)).astype(np.float64)
    out = {}
    for axis, name in ((1, "x"), (0, "y")):
        prof, start = _profile(gray, axis)
        periods, scores, phases = _comb(prof)
        if not len(periods):
            out[name] = (0.0, 0.0, 0.0, 0.0)
            continue
        i = int(np.argmax(scores))
        p = float(periods[i])
        near = periods[scores >= scores[i] - 0.02]
        p, off = _refine_grid(prof, start, p, float(phases[i]))
        off = 0.0 if min(off, p - off) < 0.1 else off
        out[name] = (float(scores[i]), p, off, float((near.max() - near.min()) / 2))
    (sx, px, ox, ux), (sy, py, oy, uy) = out["x"], out["y"]
    return {"score": min(sx, sy), "score_x": sx, "score_y": sy, "block": (px + py) / 2, "block_x": px,
            "block_y": py, "offset": (round(ox, 2), round(oy, 2)),
            "uncertainty": max(abs(px - py) / 2, ux, uy, 0.05)}


# ---------------------------------------------------------------------------------------------- features
def _luma(img: np.ndarray) -> np.ndarray:
    return img @ np.array([0.299, 0.587, 0.114], np.float32)


def _spectrum(gray: np.ndarray, axis: int) -> np.ndarray:
    """Mean power spectrum along ``axis`` of the mirrored (periodic, continuous) lines, on :data:`_FREQS`."""
    lines = gray if axis == 1 else gray.T
    lines = lines - lines.mean(axis=1, keepdims=True)
    ext = np.concatenate([lines, lines[:, ::-1]], axis=1)
    power = (np.abs(np.fft.rfft(ext, axis=1)) ** 2).mean(axis=0) / ext.shape[1]
    return np.interp(_FREQS, np.arange(len(power)) / ext.shape[1], power)


def _edge_slopes(gray: np.ndarray) -> list[float]:
    gy, gx = np.gradient(gray)
    mag = np.hypot(gx, gy)
    feats = []
    for w in _WINDOWS:
        contrast = ndimage.maximum_filter(gray, w) - ndimage.minimum_filter(gray, w)
        strong = contrast >= max(0.05, float(np.quantile(contrast, 0.8)))
        if strong.sum() < 10:
            feats += [0.0, 0.0, 0.0, 0.0]
            continue
        c = contrast[strong]
        for g in (mag, np.abs(gx), np.abs(gy)):
            feats.append(float(np.log(np.quantile(g[strong] / c, 0.9) + 1e-3)))
        feats.append(float(np.log(np.median(mag[strong] / c) + 1e-3)))
    return feats


def features(img: np.ndarray, grid: dict | None = None) -> np.ndarray:
    """The estimator's input features for one image (see the module docstring), float32 vector.

    Raises:
        ValueError: if the image is smaller than :data:`MIN_SIDE` pixels on a side.
    """
    img = as_image(img)
    if min(img.shape[:2]) < MIN_SIDE:
        raise ValueError(f"image is {img.shape[1]}x{img.shape[0]} px; the estimator needs at least "
                         f"{MIN_SIDE} px on each side (give it the face region of the photo, not a thumbnail)")
    gray = _luma(img).astype(np.float64)
    grid = grid if grid is not None else block_grid(img)
    feats = []
    ceps = []
    for axis in (1, 0):
        power = _spectrum(gray, axis)
        logp = np.log10(power[1:] + 1e-9)
        logp = logp - logp[:8].mean()
        feats += list(logp.reshape(32, 4).mean(axis=1))
        ceps.append(np.fft.irfft(np.log(power + 1e-9))[_LAGS])
    feats += list(ceps[0]) + list(ceps[0] - ceps[1])
    feats += _edge_slopes(gray)
    dx, dy = np.abs(np.diff(gray, axis=1)), np.abs(np.diff(gray, axis=0))
    feats += [float((dx < 0.5 / 255).mean()), float((dy < 0.5 / 255).mean()), float(np.log(gray.std() + 1e-3))]
    feats += [grid["score"], grid["score_x"], grid["score_y"], math.log(max(grid["block"], 1.0)),
              abs(math.log(max(grid["block_x"], 1.0) / max(grid["block_y"], 1.0)))]
    return np.asarray(feats, np.float32)


# ---------------------------------------------------------------------------------------------- model
@dataclass(frozen=True)
class _Model:
    layers: tuple[tuple[np.ndarray, np.ndarray], ...]
    mean: np.ndarray
    std: np.ndarray
    meta: dict
    sd_scale: float = 1.0  # calibration of the predicted spread (see deblur.estimate_fit.calibrate)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        h = (x - self.mean) / self.std
        for i, (w, b) in enumerate(self.layers):
            h = h @ w + b
            if i < len(self.layers) - 1:
                h = np.maximum(h, 0.0)
        return h


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@functools.lru_cache(maxsize=2)
def load_estimator(path: str | Path = MODEL_PATH) -> _Model:
    """Load the estimator network (``.npz``, no pickle) and check its sha256 against ``<path>.json``.

    Raises:
        EstimatorError: if the file or its record is missing, the checksum differs, or it cannot be read.
    """
    path = Path(path)
    record = path.with_suffix(".json")
    if not path.is_file() or not record.is_file():
        raise EstimatorError(f"estimator model {path} or its record {record.name} is missing; restore weights/ from "
                             "the repository or retrain with `python -m deblur.estimate_fit`")
    expected = json.loads(record.read_text()).get("sha256")
    if _sha256(path) != expected:
        raise EstimatorError(f"estimator model {path} does not match the sha256 in {record.name}: the file was altered "
                             "or replaced; restore it from the repository or retrain")
    try:
        with np.load(path, allow_pickle=False) as z:
            n = int(z["n_layers"])
            layers = tuple((z[f"w{i}"].astype(np.float64), z[f"b{i}"].astype(np.float64)) for i in range(n))
            scale = float(z["sd_scale"]) if "sd_scale" in z.files else 1.0
            return _Model(layers, z["mean"].astype(np.float64), z["std"].astype(np.float64), json.loads(str(z["meta"])),
                          scale)
    except (KeyError, ValueError, OSError) as exc:
        raise EstimatorError(f"estimator model {path} cannot be read ({exc}); retrain with "
                             "`python -m deblur.estimate_fit`") from exc


def _decode(out: np.ndarray, sd_scale: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Network output rows -> (kind probabilities, log1p-strength means, log1p-strength stds) per kind."""
    logits = out[:, :3]
    prob = np.exp(logits - logits.max(axis=1, keepdims=True))
    prob /= prob.sum(axis=1, keepdims=True)
    mu = out[:, 3:6]
    sd = np.exp(0.5 * np.clip(out[:, 6:9], -12, 6)) * sd_scale
    return prob, mu, sd


def estimate(img: np.ndarray, model_path: str | Path = MODEL_PATH) -> Estimate:
    """Estimate the degradation of ``img`` (anything :func:`deblur.degrade.as_image` accepts, >= 32 px).

    Raises:
        ValueError: for an image that is too small or not an image.
        EstimatorError: if the model file is missing or altered.
    """
    img = as_image(img)
    model = load_estimator(model_path)
    grid = block_grid(img)
    prob, mu, sd = _decode(model(features(img, grid)[None].astype(np.float64)), model.sd_scale)
    k = int(np.argmax(prob[0]))
    kind = KINDS[k]
    probs = {name: round(float(p), 4) for name, p in zip(KINDS, prob[0], strict=True)}
    if kind == "pixelate":
        return Estimate(kind, round(grid["block"], 3), round(grid["uncertainty"], 3), grid["offset"], probs,
                        round(grid["score"], 4), img.shape[:2])
    m, s = float(mu[0, k]), float(sd[0, k])
    strength = max(0.0, math.expm1(m))
    unc = (math.expm1(m + s) - math.expm1(m - s)) / 2  # half the +-1 sd interval, in pixels
    if kind == "motion":
        strength = refine_motion_length(img, strength)
    return Estimate(kind, round(strength, 3), round(unc, 3), None, probs, round(grid["score"], 4), img.shape[:2])


def refine_motion_length(img: np.ndarray, length: float, window: int = 3) -> float:
    """Refine a motion length to the deepest cepstral dip within ``window`` px of the network's answer.

    A horizontal box of ``L`` taps puts zeros at multiples of ``1/L`` in every row's spectrum, so the horizontal
    cepstrum (minus the vertical one, which the blur leaves alone) has its minimum at lag ``L``. The network
    gets to within about a pixel; the dip then picks the length (sub-pixel by a parabola through the minimum).
    Deconvolution is very sensitive to it: on real faces at length 15, a 1-px error costs Wiener about 5 dB.
    Measured on the 8 real face crops at lengths 5/9/15/21, PNG and JPEG q75: exact length 77% of the time
    (45% for the rounded network output), mean error 0.25 px (0.69 px).
    """
    gray = _luma(as_image(img)).astype(np.float64)
    diff = np.fft.irfft(np.log(_spectrum(gray, 1) + 1e-9)) - np.fft.irfft(np.log(_spectrum(gray, 0) + 1e-9))
    lags = np.arange(max(2, round(length) - window), min(len(diff) // 2 - 1, round(length) + window) + 1)
    if len(lags) == 0:
        return length
    j = int(lags[np.argmin(diff[lags])])
    a, b, c = diff[j - 1], diff[j], diff[j + 1]
    denom = a - 2 * b + c
    offset = 0.5 * (a - c) / denom if denom > 0 else 0.0
    return float(j + np.clip(offset, -0.5, 0.5))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m deblur.estimate",
        description="Estimate which degradation (Gaussian blur, pixelation, horizontal motion blur) made an image and "
                    "how strong it is, from the image alone. Prints JSON.")
    p.add_argument("image", help="the degraded photo or face crop (PNG/JPEG/...)")
    p.add_argument("--crop", action="store_true",
                   help="also detect the largest face and state the estimate in pixels of its 128-px crop")
    a = p.parse_args(argv)
    try:
        img = load_image(a.image)
        est = estimate(img)
    except (ImageError, ValueError, OSError, EstimatorError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = {"image": str(a.image), **est.to_dict(), "units": "pixels of the given image"}
    if a.crop:
        try:
            crop = face_crop(img)
        except NoFaceError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        out["crop"] = est.scaled(crop_scale(crop.matrix)).to_dict()
    print(json.dumps(out, indent=1))
    return 0


def crop_scale(matrix: np.ndarray) -> float:
    """Pixels of the crop per pixel of the photo for a ``2x3`` affine crop map (rotation ignored)."""
    m = np.asarray(matrix, np.float64)
    return float(math.sqrt(abs(np.linalg.det(m[:, :2]))))


if __name__ == "__main__":
    sys.exit(main())
