"""Face detection, aligned square face crops, and the way back into the photo.

Two detectors:

- ``"mtcnn"`` (facenet-pytorch, weights ship in its wheel): boxes plus five landmarks, so crops are
  rotated to put the eyes level and scaled to a canonical size.
- ``"haar"``: OpenCV's frontal-face Haar cascade, which our reference study used to keep only frontal
  faces. Boxes only, so its crops are axis-aligned squares.

A :class:`FaceCrop` keeps the affine map from the photo to the crop, so a processed crop can be pasted
back into the full photo with :func:`paste_face`.

Crop geometry (the one place it is defined)
-------------------------------------------
Every face crop in facedrift -- of a user's photo, of the built-in generated faces, in the playground, the
audit and the safety sweep -- is an aligned square of :data:`CROP_SIZE` (128) pixels in which dlib's five
landmarks sit at :data:`LANDMARKS_5` and dlib's face rectangle is :data:`FACE_RECT`. In 128-px crop
pixels (x, y):

====================  ==================
right eye, outer      (91, 60)
right eye, inner      (75, 60)
left eye, outer       (36, 60)
left eye, inner       (52, 60)
nose base             (64, 92)
eye centres           (83, 60), (44, 60): 39 px apart
dlib face rectangle   x 16-106, y 36-126
====================  ==================

("Right" is the person's right, on the image's right side in dlib's numbering.) This is the framing of
the built-in generated faces (their median dlib landmarks on the whole 128-px image) and it is exactly
where dlib's own HOG detector puts its face rectangle on such crops (measured on scikit-image's
astronaut, matplotlib's Grace Hopper photo and the generated faces). For other sizes the geometry is
scaled by ``size / 128``.

A crop is made in two steps: a rough alignment from the detector (MTCNN's five points to the ArcFace
template, or the detector's box), then dlib's 5-point shape predictor on the *photo* inside the rough
face rectangle, and a least-squares similarity (scikit-image) from those points to :data:`LANDMARKS_5`.
(Running the landmark step a second time inside its own rectangle was tried: it moved Grace Hopper's crop
further from dlib's own pipeline, 0.089 -> 0.114, so it runs once.)
Because every crop has the same geometry, :class:`deblur.embed.DlibEmbedder` embeds the clean, degraded
and restored versions of a crop with the same landmarks -- no landmark search on a blurred face.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from skimage.transform import SimilarityTransform

from deblur.degrade import as_image, to_uint8

__all__ = ["CROP_SIZE", "DETECTORS", "FACE_RECT", "LANDMARKS_5", "DlibModelError", "Face", "FaceCrop", "NoFaceError",
           "annotate_faces", "crop_face", "detect_faces", "dlib_models", "face_crop", "face_rect", "haar_has_face",
           "landmarks_5", "paste_face"]

DETECTORS = ("mtcnn", "haar")
CROP_SIZE = 128  # side of the aligned face crop the app, the audit and the safety sweep work on
MIN_FACE_PX = 20  # smallest face side the detectors look for

# dlib's five landmarks (right eye outer/inner, left eye outer/inner, nose base) and dlib's face rectangle
# (x0, y0, x1, y1) in a 128-px crop: see the module docstring.
LANDMARKS_5 = np.array([[91.0, 60.0], [75.0, 60.0], [36.0, 60.0], [52.0, 60.0], [64.0, 92.0]])
FACE_RECT = (16.0, 36.0, 106.0, 126.0)

# Rough alignment only: MTCNN's five points (eyes, nose tip, mouth corners) in the common 112-px ArcFace
# crop, scaled to 128 px. At this scale the generated faces and real photos share the geometry above.
_MTCNN_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
) / 112.0 * CROP_SIZE
# Where OpenCV's Haar box (a detector without landmarks) lands in a 128-px crop: measured median on the
# generated faces (side 98.5, centre 64.5/70.3), astronaut and Grace Hopper. Only the rough alignment;
# dlib's landmarks then fix it.
_HAAR_BOX = (15.0, 21.0, 113.0, 119.0)
# Accept dlib's refinement only if it agrees with the rough alignment this well (else keep the rough one
# and say so in FaceCrop.alignment): scale ratio, rotation (radians) and shift (fraction of the crop).
_REFINE_LIMITS = (1.35, 0.35, 0.15)


def landmarks_5(size: int = CROP_SIZE) -> np.ndarray:
    """:data:`LANDMARKS_5` for a ``size``-px crop (``5x2``, x/y)."""
    return LANDMARKS_5 * (size / CROP_SIZE)


def face_rect(size: int = CROP_SIZE) -> tuple[float, float, float, float]:
    """:data:`FACE_RECT` for a ``size``-px crop."""
    return tuple(v * size / CROP_SIZE for v in FACE_RECT)


class DlibModelError(OSError):
    """dlib's model files are missing or damaged (the message names the file and how to reinstall it)."""


def _face_models_dir() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise DlibModelError("dlib's model files need the face-recognition-models package: "
                           "pip install face-recognition-models==0.3.0 dlib-bin")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


@functools.lru_cache(maxsize=1)
def dlib_models():
    """``(dlib, shape_predictor_5, face_recognition_model, hog_detector)``, loaded once per process.

    Raises:
        DlibModelError: naming the missing or damaged model file and how to fix it.
    """
    import dlib  # compiled extension; loaded only when landmarks or embeddings are asked for

    models = _face_models_dir()
    files = {"shape": models / "shape_predictor_5_face_landmarks.dat",
             "resnet": models / "dlib_face_recognition_resnet_model_v1.dat"}
    reinstall = "reinstall it: pip install --force-reinstall face-recognition-models==0.3.0"
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise DlibModelError(f"dlib model files are missing: {', '.join(missing)}; {reinstall}")
    loaded = {}
    for key, load in (("shape", dlib.shape_predictor), ("resnet", dlib.face_recognition_model_v1)):
        try:
            loaded[key] = load(str(files[key]))
        except RuntimeError as exc:  # dlib's own message ("Error deserializing ...") does not name the file
            reason = str(exc).strip().splitlines()[0][:200]
            raise DlibModelError(f"dlib model file {files[key]} is damaged ({reason}); {reinstall}") from exc
    return dlib, loaded["shape"], loaded["resnet"], dlib.get_frontal_face_detector()


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
        alignment: ``"dlib"`` (dlib's landmarks on the photo put the face at :data:`LANDMARKS_5`) or
            ``"detector"`` (dlib's landmarks disagreed with the detector, e.g. a profile face; the crop
            follows the detector only and its geometry is approximate).
    """

    image: np.ndarray
    matrix: np.ndarray
    photo_shape: tuple[int, int]
    face: Face
    alignment: str = "dlib"


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


def detect_faces(img: np.ndarray, method: str = "mtcnn", min_size: int = MIN_FACE_PX,
                 device: str = "cpu") -> list[Face]:
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
    if min(u8.shape[:2]) < min_size:  # no face of min_size fits (and MTCNN's image pyramid would be empty)
        return faces
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


def _similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, scale, shift) taking ``src`` points to ``dst``, as ``2x3``."""
    return SimilarityTransform.from_estimate(np.asarray(src, float), np.asarray(dst, float)).params[:2]


def _rough_matrix(face: Face, size: int) -> np.ndarray:
    """Photo -> crop map from the detector alone (MTCNN landmarks, else its box onto FACE_RECT)."""
    if face.landmarks is not None:
        return _similarity(face.landmarks, _MTCNN_TEMPLATE * (size / CROP_SIZE))
    x0, y0, x1, y1 = face.box
    hx0, hy0, hx1, hy1 = (v * size / CROP_SIZE for v in _HAAR_BOX)
    scale = (hx1 - hx0) / max(x1 - x0, y1 - y0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return np.array([[scale, 0, (hx0 + hx1) / 2 - scale * cx], [0, scale, (hy0 + hy1) / 2 - scale * cy]])


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return np.asarray(points, float) @ matrix[:, :2].T + matrix[:, 2]


def _refined_matrix(u8: np.ndarray, rough: np.ndarray, size: int) -> np.ndarray | None:
    """dlib's five landmarks on the photo, found inside the rough face rectangle, mapped to LANDMARKS_5.

    ``None`` when they disagree with the rough alignment beyond :data:`_REFINE_LIMITS`.
    """
    dlib, shape_predictor, _, _ = dlib_models()
    x0, y0, x1, y1 = face_rect(size)
    corners = _apply(cv2.invertAffineTransform(rough), [[x0, y0], [x1, y0], [x0, y1], [x1, y1]])
    (bx0, by0), (bx1, by1) = corners.min(0), corners.max(0)
    shape = shape_predictor(u8, dlib.rectangle(int(round(bx0)), int(round(by0)), int(round(bx1)), int(round(by1))))
    points = np.array([[shape.part(k).x, shape.part(k).y] for k in range(5)], float)
    refined = _similarity(points, landmarks_5(size))
    # Compare the two maps: relative scale, rotation and where the photo's rough face centre lands.
    scale_r, scale_f = np.hypot(*rough[:, 0]), np.hypot(*refined[:, 0])
    angle = abs(np.arctan2(refined[1, 0], refined[0, 0]) - np.arctan2(rough[1, 0], rough[0, 0]))
    centre = _apply(cv2.invertAffineTransform(rough), [[size / 2, size / 2]])
    shift = np.linalg.norm(_apply(refined, centre) - size / 2) / size
    max_scale, max_angle, max_shift = _REFINE_LIMITS
    if max(scale_r / scale_f, scale_f / scale_r) > max_scale or angle > max_angle or shift > max_shift:
        return None
    return refined


def crop_face(img: np.ndarray, face: Face, size: int = CROP_SIZE) -> FaceCrop:
    """Cut an aligned ``size x size`` crop around ``face`` in the geometry of the module docstring."""
    if size < 16:
        raise ValueError(f"crop size must be at least 16 px, got {size}")
    img = as_image(img)
    rough = _rough_matrix(face, size)
    u8 = to_uint8(img)
    matrix = _refined_matrix(u8, rough, size)
    alignment = "dlib" if matrix is not None else "detector"
    if matrix is None:
        matrix = rough
    return FaceCrop(_warp(img, matrix, size), matrix, img.shape[:2], face, alignment)


def _warp(img: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """``warpAffine`` that does not alias when shrinking: area-resize the photo first (warpAffine has no
    area filter), then warp at a scale near 1 with cubic interpolation."""
    scale = float(np.hypot(*matrix[:, 0]))
    src, m = img, matrix
    if scale < 0.8:
        src = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        fx, fy = src.shape[1] / img.shape[1], src.shape[0] / img.shape[0]
        m = matrix @ np.array([[1 / fx, 0, 0.5 / fx - 0.5], [0, 1 / fy, 0.5 / fy - 0.5], [0, 0, 1]])
    crop = cv2.warpAffine(src, m, (size, size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT101)
    return np.clip(crop, 0, 1).astype(np.float32)


def face_crop(img: np.ndarray, size: int = CROP_SIZE, method: str = "mtcnn", index: int = 0,
              faces: list[Face] | None = None) -> FaceCrop:
    """Detect faces and crop one: ``index`` 0 is the largest (faces are numbered largest first, as
    :func:`annotate_faces` draws them). ``faces``: detections already made on ``img`` (not detected again).

    Raises:
        NoFaceError: if no face is found.
        ValueError: if ``index`` is not one of the faces found (the message says how many there are).
    """
    h, w = np.shape(img)[:2]
    if min(h, w) < MIN_FACE_PX:
        raise NoFaceError(f"the image is {w}×{h} pixels: too small to find a face in (faces need at least "
                          f"{MIN_FACE_PX} pixels across); use a larger photo")
    if faces is None:
        faces = detect_faces(img, method, min_size=MIN_FACE_PX)
    if not faces:
        raise NoFaceError(f"no face found by the {method} detector; try a larger, frontal, well-lit face")
    if not 0 <= index < len(faces):
        raise ValueError(f"face {index + 1} was asked for, but this photo has {len(faces)} face(s) "
                         f"(numbered 1-{len(faces)}, largest first)")
    return crop_face(img, faces[index], size)


def annotate_faces(img: np.ndarray, faces: list[Face], chosen: int | None = 0) -> np.ndarray:
    """The photo with every detected face boxed and numbered (1 = largest); the chosen one in green.

    Returns:
        ``HxWx3`` uint8, for showing the user which face a result is about.
    """
    out = to_uint8(img).copy()
    thick = max(2, round(max(out.shape[:2]) / 300))
    for k, face in enumerate(faces):
        x0, y0, x1, y1 = (int(round(v)) for v in face.box)
        colour = (40, 200, 60) if k == chosen else (230, 200, 40)
        cv2.rectangle(out, (x0, y0), (x1, y1), colour, thick)
        cv2.putText(out, str(k + 1), (x0 + thick, max(y0 - 2 * thick, 12 * thick)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4 * thick, colour, thick, cv2.LINE_AA)
    return out


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
