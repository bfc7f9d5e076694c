"""The clean pass of the audit, one image at a time: crop the face, check there is one, embed it, form its groups.

:func:`prepare_face` gives the :class:`CleanFace` that feeds the gallery and the per-image step (:mod:`audit.step`).
:func:`to_crop` is facedrift's one way from a photo to a face crop (also used by "Is this blur safe?").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import cv2
import numpy as np

from audit.groups import PREDICTED_ATTRIBUTES, predict_groups
from deblur.degrade import as_image
from deblur.embed import Embedder
from deblur.faces import CROP_SIZE, NoFaceError, face_crop, haar_has_face

if TYPE_CHECKING:  # type hints only
    from audit.config import AuditConfig

__all__ = ["CleanFace", "crop_mode", "prepare_face", "to_crop"]


@dataclass
class CleanFace:
    """One clean face after the first pass.

    Attributes:
        image_id: id of the image.
        image: ``128x128x3`` face crop (or ``None`` if no face was found).
        embedding: clean embedding (``None``: no face; its rows get status ``no_face_clean``).
        landmarks: five dlib landmarks of the crop, if known (for the skin region).
        groups: group column → group value (labels and predictions).
        info: supporting values (predicted age, ITA, skin L*, why skin was unusable...).
    """

    image_id: str
    image: np.ndarray | None
    embedding: np.ndarray | None
    landmarks: np.ndarray | None
    groups: dict[str, str]
    info: dict = field(default_factory=dict)


def crop_mode(config: AuditConfig) -> str:
    """``"auto"`` is ``"whole"`` for the built-in set (already aligned crops) and ``"detect"`` for photos."""
    if config.crop != "auto":
        return config.crop
    return "whole" if config.data == "builtin" else "detect"


def to_crop(img: np.ndarray, crop: str = "detect", size: int = CROP_SIZE) -> np.ndarray | None:
    """Face crop of a photo in facedrift's one crop geometry (:mod:`deblur.faces`).

    ``"detect"`` finds and aligns the largest face (MTCNN, then dlib's landmarks); ``"whole"`` means the
    image already *is* such a crop (the built-in set, or crops saved by facedrift) and is only resized.
    ``"auto"`` is ``"detect"`` here (the audit driver maps it to ``"whole"`` for the built-in set only):
    a square photo is not an aligned crop just because it is small.

    Returns:
        ``size x size x 3`` float32 crop, or ``None`` when no face is detected.
    """
    if crop not in ("auto", "whole", "detect"):
        raise ValueError(f"crop must be 'auto', 'whole' or 'detect', got {crop!r}")
    img = as_image(img)
    h, w = img.shape[:2]
    if crop == "whole":
        if (h, w) == (size, size):
            return img
        return np.clip(cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA if h > size else cv2.INTER_CUBIC),
                       0, 1).astype(np.float32)
    try:
        return face_crop(img, size).image
    except NoFaceError:
        return None


def prepare_face(img: np.ndarray | None, image_id: str, embedder: Embedder, *, labels: Mapping[str, str] | None = None,
                 predict: Sequence[str] = PREDICTED_ATTRIBUTES, crop: str = "auto",
                 require_detection: bool = True) -> CleanFace:
    """First pass for one image: crop, check there is a face, embed, and form its groups.

    Args:
        img: the photo or face crop (``None``: unreadable, treated as no face).
        image_id: its id.
        embedder: face embedder.
        labels: ground-truth group columns of this image (already strings).
        predict: predicted attributes to add (see :data:`audit.groups.PREDICTED_ATTRIBUTES`).
        crop: see :func:`to_crop`.
        require_detection: the clean crop must pass OpenCV's frontal-face Haar cascade (the study's filter);
            whole-crop embedders would otherwise embed a picture without a face.
    """
    groups = dict(labels or {})
    face = to_crop(img, crop) if img is not None else None
    if face is not None and require_detection and not haar_has_face(face):
        face = None
    if face is None:
        for attr in predict:
            groups.setdefault(attr, "no_face")
        return CleanFace(image_id, None, None, None, groups, {"reason": "no face in the clean image"})
    embedding = embedder.embed(face)
    landmarks = embedder.landmarks(face) if hasattr(embedder, "landmarks") else None
    info: dict = {}
    if predict:
        predicted = predict_groups(face, landmarks, predict)
        for attr in predict:
            groups[attr] = str(predicted.pop(attr))
        info.update(predicted)
    if embedding is None:
        info["reason"] = "the embedder found no face in the clean crop"
    return CleanFace(image_id, face, embedding, landmarks, groups, info)
