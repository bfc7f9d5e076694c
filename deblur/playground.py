"""What the Playground computes, without any UI: restore one photo with every restorer and measure each output.

One request: cut the face (or shrink the whole image) with :func:`prepare`, degrade it (or take the user's
already-degraded photo as is), run every restorer that :func:`deblur.restore.restorers_for` offers for that
degradation, and measure each output (:func:`restore_and_measure`): PSNR/SSIM against the original and identity
distance (dlib embedding, L2) to the original and to the degraded input.

Errors are plain exceptions with a message for the user (``ValueError`` and its subclasses
:class:`~deblur.faces.NoFaceError`, :class:`~deblur.restore.WeightsError`); the UI (:mod:`ui.playground`) shows
them. Nothing heavy happens at import: restorers and the embedder are built on first use and cached.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
import pandas as pd

from deblur import degrade as D
from deblur.blind import BlindReading, estimate_photo
from deblur.embed import PUBLISHED_THRESHOLDS, get_embedder, l2_distance
from deblur.faces import CROP_SIZE, MIN_FACE_PX, FaceCrop, NoFaceError, crop_face, detect_faces, face_crop
from deblur.metrics import collapse, psnr, ssim
from deblur.restore import close_restorers, external_restorers, restore_outcomes, restorers_for
from deblur.strengths import STRENGTHS, check_strength

MODES = {"face": "Face crop (detected, aligned, 128×128)", "whole": "Whole image (shrunk to ≤ 512 px per side)"}
SOURCES = {"clean": "A clean photo: degrade it here", "degraded": "My photo is already blurred / pixelated"}
WHOLE_MAX_SIDE = 512  # restorers and the embedder stay interactive on CPU at this size
# dlib's own same-person threshold, calibrated on real photos (LFW). On generated faces it is too lenient
# (see ASSETS.md), so the app calls it a rough guide, and the audit calibrates its own.
METRIC_COLUMNS = ["restorer", "family", "told strength", "PSNR (dB)", "SSIM", "identity dist. to original",
                  "identity dist. to degraded", "artefacts", "time (ms)", "reading"]
IDENTITY_THRESHOLD = PUBLISHED_THRESHOLDS["dlib"].distance  # dlib's published same-person L2
EMBEDDER = "dlib"


def restorers(kind: str) -> dict:
    """Every restorer for ``kind`` (learned, classical, ``"none"``), from the process-wide registry cache."""
    return restorers_for(kind)


@functools.lru_cache(maxsize=1)
def embedder():
    """The dlib face embedder, built once per process."""
    return get_embedder(EMBEDDER)


def _shrink(img: np.ndarray, max_side: int = WHOLE_MAX_SIDE) -> np.ndarray:
    h, w = img.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1:
        return img
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.clip(cv2.resize(img, size, interpolation=cv2.INTER_AREA), 0, 1).astype(np.float32)


@dataclass
class Prepared:
    """The image a request works on, and how it was cut from the upload.

    Attributes:
        image: the face crop or the shrunk whole image.
        where: the detected face (for identity crops in whole-image mode); ``None`` if none was found.
        note: one sentence for the user on what was done to their photo.
    """

    image: np.ndarray
    where: FaceCrop | None
    note: str


def prepare(img: np.ndarray, mode: str, whole_image_hint: bool = True, face: int = 1) -> Prepared:
    """Cut the face crop (``mode="face"``) or shrink the whole image (``mode="whole"``).

    Args:
        whole_image_hint: suggest the 'Whole image' mode when no face is found (only where the tab has it).
        face: which face of a group photo, numbered from 1 = the largest (identity is measured on it).

    Raises:
        NoFaceError: no face found in face-crop mode (the message says what to try).
        ValueError: an unknown mode, or a face number the photo does not have.
    """
    if mode == "face":
        faces = detect_faces(img, min_size=MIN_FACE_PX) if min(img.shape[:2]) >= MIN_FACE_PX else []
        try:
            crop = face_crop(img, CROP_SIZE, index=int(face) - 1, faces=faces)
        except NoFaceError as exc:
            hint = " Or switch to 'Whole image' mode to process the photo without a face crop." * whole_image_hint
            raise NoFaceError(f"No face found in this photo: {exc}.{hint}") from exc
        scale = float(np.hypot(*crop.matrix[0, :2]))
        return Prepared(crop.image, crop,
                        f"{_which_face(crop, faces)} detected and aligned into a {CROP_SIZE}×{CROP_SIZE} crop "
                        f"(scaled ×{scale:.2f}).")
    if mode == "whole":
        small = _shrink(img)
        faces = detect_faces(small, min_size=MIN_FACE_PX) if min(small.shape[:2]) >= MIN_FACE_PX else []
        try:
            where = face_crop(small, CROP_SIZE, index=int(face) - 1, faces=faces)
        except NoFaceError:
            where = None
        h, w = small.shape[:2]
        note = f"Whole image used, shrunk to {w}×{h} for speed." if small is not img else f"Whole image used ({w}×{h})."
        if where is None:
            note += " No face found, so identity distances are not measured."
        else:
            note += f" Identity is measured on {_which_face(where, faces).lower()}."
        return Prepared(small, where, note)
    raise ValueError(f"Unknown mode {mode!r}; choose one of {', '.join(MODES)}.")


def _which_face(crop: FaceCrop, faces: list) -> str:
    """"Face 2 of 6 (box x0,y0-x1,y1; numbered largest first)" -- which face a result is about."""
    x0, y0, x1, y1 = (int(round(v)) for v in crop.face.box)
    if len(faces) <= 1:
        return f"Face (box {x0},{y0}–{x1},{y1})"
    k = next(i for i, f in enumerate(faces) if f is crop.face) + 1
    return f"Face {k} of {len(faces)} (box {x0},{y0}–{x1},{y1}; numbered largest first, pick another with 'Face #')"


@dataclass
class Reconstruction:
    """One restorer's output.

    Attributes:
        name: restorer key (``"wiener"``, ``"none"``, a learned model's name…).
        label: human label.
        family: ``"learned"``, ``"classical"``, ``"none"`` or ``"external"``.
        told_strength: whether it was given the strength (non-blind).
        image: the 8-bit-rounded reconstruction, float32 HxWx3 (``None`` when an external call failed).
        seconds: time the restorer took.
        status: ``"ok"`` or the failed external call's ``error:<reason>``.
        note: details of a failure, or that an external output was resized back.
    """

    name: str
    label: str
    family: str
    told_strength: bool
    image: np.ndarray | None
    seconds: float
    status: str = "ok"
    note: str = ""


@dataclass
class PlaygroundResult:
    """Everything one playground request shows.

    Attributes:
        original: the clean processed image, or ``None`` when the user uploaded an already degraded photo.
        degraded: the degraded image the restorers saw (8-bit).
        reconstructions: one per restorer, in ``restorers_for`` order.
        table: per-restorer metrics (see :func:`metrics_table`).
        reading: plain-words summary (Markdown).
        note: what was done to the photo.
    """

    original: np.ndarray | None
    degraded: np.ndarray
    reconstructions: list[Reconstruction] = field(default_factory=list)
    table: pd.DataFrame | None = None
    reading: str = ""
    note: str = ""


def _identity_view(img: np.ndarray, prepared: Prepared, mode: str) -> np.ndarray | None:
    if mode == "face":
        return img
    if prepared.where is None:
        return None
    return crop_face(img, prepared.where.face, CROP_SIZE).image


def _distance(a: np.ndarray | None, b: np.ndarray | None) -> float:
    return float("nan") if a is None or b is None else l2_distance(a, b)


def _reading(d_orig: float, d_input: float, d_deg_orig: float, has_original: bool, artefacts: str = "ok") -> str:
    if artefacts == "collapsed":  # ringing/stripes: an identity distance to them is not a statement about a face
        return ("output collapsed into ringing/stripes (usually a wrong strength): not a reconstruction, so no "
                "identity reading")
    if has_original:
        if np.isnan(d_orig):
            return "no face found in this output by the identity model"
        if d_orig < IDENTITY_THRESHOLD:
            text = f"the same person as the original to dlib ({d_orig:.2f} < {IDENTITY_THRESHOLD})"
        else:
            text = f"a different person from the original to dlib ({d_orig:.2f} ≥ {IDENTITY_THRESHOLD})"
        if not np.isnan(d_deg_orig):
            if d_orig < d_deg_orig - 0.02:
                text += "; closer to the original than the degraded input was"
            elif d_orig > d_deg_orig + 0.02:
                text += "; drifted further from the original than the degraded input"
            else:
                text += "; about as far from the original as the degraded input"
        return text
    if np.isnan(d_input):
        return "no face found in this output by the identity model"
    if d_input < IDENTITY_THRESHOLD:
        return f"still the same person as your input to dlib ({d_input:.2f} < {IDENTITY_THRESHOLD})"
    return (f"dlib sees a different person than in your input ({d_input:.2f} ≥ {IDENTITY_THRESHOLD}): "
            "the model changed who this looks like")


def metrics_table(result: PlaygroundResult, prepared: Prepared, mode: str) -> pd.DataFrame:
    """PSNR/SSIM vs the original and identity distances for every reconstruction.

    Identity distance is the L2 distance between dlib face embeddings (0 = identical; dlib calls < 0.6 the
    same person on real photos). Reference metrics are NaN when there is no original.
    """
    emb = embedder()

    def embed(img: np.ndarray) -> np.ndarray | None:
        view = _identity_view(img, prepared, mode)
        return None if view is None else emb.embed(view)

    has_original = result.original is not None
    e_orig = embed(result.original) if has_original else None
    e_deg = embed(result.degraded)
    d_deg_orig = _distance(e_deg, e_orig)
    rows = []
    for rec in result.reconstructions:
        if rec.image is None:  # a failed external call: its status instead of numbers
            rows.append({"restorer": rec.label, "family": rec.family,
                         "told strength": "yes" if rec.told_strength else "no (blind)",
                         "time (ms)": round(rec.seconds * 1000, 1), "reading": f"failed, {rec.status}: {rec.note}"})
            continue
        e_rec = e_deg if rec.name == "none" else embed(rec.image)
        d_orig, d_input = _distance(e_rec, e_orig), _distance(e_rec, e_deg)
        artefacts = collapse(result.degraded, rec.image).verdict
        rows.append({
            "restorer": rec.label,
            "family": rec.family,
            "told strength": "yes" if rec.told_strength else "no (blind)",
            "PSNR (dB)": round(psnr(result.original, rec.image), 2) if has_original else float("nan"),
            "SSIM": round(ssim(result.original, rec.image), 4) if has_original else float("nan"),
            "identity dist. to original": round(d_orig, 3),
            "identity dist. to degraded": round(d_input, 3),
            "artefacts": artefacts,
            "time (ms)": round(rec.seconds * 1000, 1),
            "reading": _reading(d_orig, d_input, d_deg_orig, has_original, artefacts)
            + (f" ({rec.note})" if rec.note else ""),
        })
    return pd.DataFrame(rows, columns=METRIC_COLUMNS)


def _summary(result: PlaygroundResult) -> str:
    table = result.table
    lines = [result.note]
    if table is None or table.empty:
        return " ".join(lines)
    learned = table[table["family"] == "learned"]
    broken = table[table["artefacts"] == "collapsed"]
    if len(broken):
        lines.append(f"**{len(broken)} output(s) collapsed into ringing/stripes** ({', '.join(broken['restorer'])}): "
                     "the strength they were told is probably wrong for this photo; they get no identity reading.")
    if result.original is not None:
        col = "identity dist. to original"
        if table[col].notna().any():
            best = table.loc[table[col].idxmin()]
            lines.append(f"Closest to the original's identity: **{best['restorer']}** (distance {best[col]:.2f}).")
        drifted = learned[learned[col] >= IDENTITY_THRESHOLD]
        if len(drifted):
            lines.append(f"{len(drifted)} learned model(s) produced a face dlib would call a different person.")
        lines.append("Restorers told the strength (non-blind) have an advantage the blind models do not.")
    else:
        lines.append("No original is known, so there is no PSNR/SSIM: only how far each output moved from your input.")
    lines.append(f"Identity distance: dlib embeddings, L2; below {IDENTITY_THRESHOLD} usually means the same person "
                 "on real photos — a rough guide, not a verdict.")
    return "\n\n".join(lines)


def estimate_degradation(photo: np.ndarray, prepared: Prepared, mode: str) -> BlindReading:
    """Estimate the degradation of an already degraded upload (:func:`deblur.blind.estimate_photo`).

    The estimate is made in pixels of the photo (on the face crop's footprint in face mode, so the crop's
    rotation and resampling do not change the blur) and converted to pixels of the processed image.
    """
    if mode == "face" and prepared.where is not None:
        return estimate_photo(photo, prepared.where.matrix, crop_size=CROP_SIZE)
    return estimate_photo(photo, None, processed_scale=prepared.image.shape[1] / photo.shape[1])


def check_request(source: str, kind: str, strength: float) -> float:
    """Validate a request's settings; returns the strength as a float.

    Raises:
        ValueError: an unknown source or degradation, or a strength that is invalid or outside the offered range
            (the message names the valid ones).
    """
    if source not in SOURCES:
        raise ValueError(f"Unknown source {source!r}; choose one of {', '.join(SOURCES)}.")
    if kind not in STRENGTHS:
        raise ValueError(f"Unknown degradation {kind!r}; choose one of {', '.join(STRENGTHS)}.")
    strength = check_strength(kind, strength)
    spec = STRENGTHS[kind]
    if not spec.low <= strength <= spec.high:  # the offered range also bounds the work one request can ask for
        raise ValueError(f"{kind} takes {spec.name} from {spec.low:g} to {spec.high:g} here; got {strength:g}.")
    return strength


def restore_and_measure(prepared: Prepared, mode: str, source: str, kind: str, strength: float,
                        external: Sequence[str] = ()) -> PlaygroundResult:
    """One playground request on a prepared photo, end to end.

    Args:
        prepared: the photo as :func:`prepare` cut it.
        mode: the ``mode`` it was prepared with: ``"face"`` (aligned 128×128 crop) or ``"whole"``.
        source: ``"clean"`` (degrade it here, reference metrics available) or ``"degraded"`` (the upload is
            already blurred/pixelated; ``strength`` is the user's guess, given to non-blind restorers).
        kind: ``"gaussian"``, ``"pixelate"`` or ``"motion"``.
        strength: σ / block size / kernel length in pixels of the processed image.
        external: external restorer specs (``NAME=URL#/api_name``…, :mod:`deblur.restore.external`) shown next
            to ours; a failed call is a row with its status, not an error.

    Raises:
        ValueError: invalid settings (see :func:`check_request`), weights that cannot be loaded, or an external
            spec that is bad, unreachable or reuses a built-in name.
    """
    strength = check_request(source, kind, strength)
    if source == "clean":
        original = D.quantize(prepared.image)  # 8-bit, as shown and downloaded: metrics reproduce from the PNGs
        degraded = D.quantize(D.degrade(original, kind, strength))
    else:
        original, degraded = None, D.quantize(prepared.image)
    result = PlaygroundResult(original, degraded, note=prepared.note)
    ours = restorers(kind)
    outside = external_restorers(external, [kind])[kind] if external else {}
    clash = sorted(set(ours) & set(outside))
    if clash:
        raise ValueError(f"external restorer name(s) {clash} are taken by built-in restorers; pick another NAME=")
    try:
        for name, restorer in ours.items():
            start = time.perf_counter()
            out = restorer.restore(degraded, strength if restorer.uses_strength else None)
            result.reconstructions.append(Reconstruction(
                name, restorer.label, restorer.family, bool(restorer.uses_strength), D.quantize(out),
                time.perf_counter() - start))
        for name, restorer in outside.items():
            told = bool(restorer.uses_strength)
            got = restore_outcomes(restorer, [degraded], [strength if told else None])[0]
            result.reconstructions.append(Reconstruction(
                name, restorer.label, restorer.family, told, D.quantize(got.image) if got.ok else None, got.seconds,
                got.status, got.note))
    finally:
        close_restorers({kind: outside})
    result.table = metrics_table(result, prepared, mode)
    result.reading = _summary(result)
    return result
