"""Face detection, aligned square face crops, and the way back into the photo.

Two detectors:

- ``"mtcnn"`` (facenet-pytorch, weights ship in its wheel): boxes plus five landmarks, so crops are
  rotated to put the eyes level and scaled to a canonical size.
- ``"haar"``: OpenCV's frontal-face Haar cascade, which our reference study used to keep only frontal
  faces. Boxes only, so its crops are axis-aligned squares.

A :class:`FaceCrop` keeps the affine map from the photo to the crop, so a processed crop can be pasted
back into the full photo with :func:`paste_face`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from deblur.degrade import as_image, to_uint8

__all__ = ["CROP_SIZE", "DETECTORS", "Face", "FaceCrop", "NoFaceError", "crop_face", "detect_faces", "face_crop",
           "haar_has_face", "paste_face"]

DETECTORS = ("mtcnn", "haar")
CROP_SIZE = 128  # side of the aligned face crop the app, the audit and the safety sweep work on

# Five-point template (eyes, nose tip, mouth corners) of the common 112-px ArcFace crop, shrunk by 0.75
# around the centre so the crop keeps forehead, chin and some hair, the framing of our training faces.
_TEMPLATE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)
_TEMPLATE = (_TEMPLATE_112 / 112.0 - 0.5) * 0.75 + 0.5
_BOX_MARGIN = 1.3  # square side / detector box side, for crops without landmarks


class NoFaceError(ValueError):
    """Raised when a photo has no detectable face and a face crop was asked for."""


@dataclass(frozen=True)
class Face:
    """One detected face.

    Attributes:
        box: ``(x0, y0, x1, y1)`` in pixels of the photo.
        score: detector confidence (1.0 for the Haar cascade, which gives none).
        landmarks: ``5x2`` array (left eye, right eye, nose, mouth left, mouth right) or ``None``.
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray | None = None

    @property
    def area(self) -> float:
        x0, y0, x1, y1 = self.box
        return max(0.0, x1 - x0) * max(0.0, y1 - y0)


@dataclass(frozen=True)
class FaceCrop:
    """A square face crop and the affine map that made it.

    Attributes:
        image: ``size x size x 3`` float32 crop.
        matrix: ``2x3`` affine map from photo pixel coordinates to crop coordinates.
        photo_shape: ``(H, W)`` of the photo it came from.
        face: the detection it was cut around.
    """

    image: np.ndarray
    matrix: np.ndarray
    photo_shape: tuple[int, int]
    face: Face


@functools.lru_cache(maxsize=2)
def _mtcnn(device: str):
    from facenet_pytorch import MTCNN  # heavy import, only when a detection is asked for

    return MTCNN(keep_all=True, device=device, post_process=False)


@functools.lru_cache(maxsize=1)
def _haar() -> cv2.CascadeClassifier:
    path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise RuntimeError(f"OpenCV's Haar cascade is missing at {path}; install opencv-python-headless<5")
    return cascade


def detect_faces(img: np.ndarray, method: str = "mtcnn", min_size: int = 20, device: str = "cpu") -> list[Face]:
    """Detect faces, largest first.

    Args:
        img: photo, anything :func:`deblur.degrade.as_image` accepts.
        method: ``"mtcnn"`` (boxes and landmarks) or ``"haar"`` (the study's frontal-face filter).
        min_size: smallest face side in pixels to report.
        device: torch device for MTCNN.

    Returns:
        Detected faces sorted by box area, largest first (empty list if none).
    """
    if method not in DETECTORS:
        raise ValueError(f"unknown face detector {method!r}; choose one of {DETECTORS}")
    u8 = to_uint8(img)
    faces: list[Face] = []
    if method == "haar":
        gray = cv2.cvtColor(u8, cv2.COLOR_RGB2GRAY)
        for x, y, w, h in _haar().detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(min_size, min_size)):
            faces.append(Face((float(x), float(y), float(x + w), float(y + h)), 1.0))
    else:
        detector = _mtcnn(device)
        detector.min_face_size = min_size
        boxes, probs, points = detector.detect(u8, landmarks=True)
        if boxes is not None:
            boxes = np.asarray(boxes, dtype=float)
            for box, prob, pts in zip(boxes, probs, points, strict=False):
                faces.append(Face(tuple(float(v) for v in box), float(prob), np.asarray(pts, dtype=float)))
    return sorted(faces, key=lambda f: f.area, reverse=True)


def haar_has_face(img: np.ndarray, min_size: int = 24) -> bool:
    """Whether the study's frontal-face Haar cascade finds a face (its data filter)."""
    return len(detect_faces(img, "haar", min_size=min_size)) > 0


def _crop_matrix(face: Face, size: int) -> np.ndarray:
    if face.landmarks is not None:
        target = (_TEMPLATE * size).astype(np.float32)
        matrix, _ = cv2.estimateAffinePartial2D(face.landmarks.astype(np.float32), target, method=cv2.LMEDS)
        if matrix is not None:
            return matrix
    x0, y0, x1, y1 = face.box
    side = max(x1 - x0, y1 - y0) * _BOX_MARGIN
    scale = size / side
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return np.array([[scale, 0, size / 2 - scale * cx], [0, scale, size / 2 - scale * cy]], dtype=np.float64)


def crop_face(img: np.ndarray, face: Face, size: int = CROP_SIZE) -> FaceCrop:
    """Cut an aligned ``size x size`` crop around ``face`` (eyes level when landmarks are known)."""
    if size < 16:
        raise ValueError(f"crop size must be at least 16 px, got {size}")
    img = as_image(img)
    matrix = _crop_matrix(face, size)
    crop = cv2.warpAffine(img, matrix, (size, size), flags=cv2.INTER_AREA if matrix[0, 0] < 1 else cv2.INTER_CUBIC,
                          borderMode=cv2.BORDER_REFLECT101)
    return FaceCrop(np.clip(crop, 0, 1).astype(np.float32), matrix, img.shape[:2], face)


def face_crop(img: np.ndarray, size: int = CROP_SIZE, method: str = "mtcnn") -> FaceCrop:
    """Detect faces and crop the largest one.

    Raises:
        NoFaceError: if no face is found.
    """
    faces = detect_faces(img, method)
    if not faces:
        raise NoFaceError(f"no face found by the {method} detector; try a larger, frontal face or use the whole image")
    return crop_face(img, faces[0], size)


def paste_face(photo: np.ndarray, crop: np.ndarray, where: FaceCrop, feather: int = 4) -> np.ndarray:
    """Warp a processed crop back into the photo it came from, blending a feathered border.

    Args:
        photo: the full photo (``where.photo_shape``).
        crop: processed crop with the shape of ``where.image``.
        where: the :class:`FaceCrop` the crop was made from.
        feather: width in crop pixels of the soft edge.
    """
    photo = as_image(photo, name="photo")
    crop = as_image(crop, name="crop")
    if photo.shape[:2] != tuple(where.photo_shape):
        raise ValueError(f"photo is {photo.shape[:2]}, but the crop was cut from a {where.photo_shape} photo")
    if crop.shape != where.image.shape:
        raise ValueError(f"crop is {crop.shape}, expected {where.image.shape}")
    h, w = photo.shape[:2]
    size = crop.shape[0]
    inverse = cv2.invertAffineTransform(where.matrix)
    mask = np.zeros((size, size), np.float32)
    mask[feather:size - feather, feather:size - feather] = 1.0
    if feather:
        mask = cv2.GaussianBlur(mask, (0, 0), feather / 2)
    back = cv2.warpAffine(crop, inverse, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    alpha = cv2.warpAffine(mask, inverse, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)[:, :, None]
    return np.clip(photo * (1 - alpha) + back * alpha, 0, 1).astype(np.float32)
