"""Face embedders behind one small interface, and the identity distances the audit reports.

Two embedders:

- ``"dlib"``: dlib's ResNet (128-d, from the CC0 ``face-recognition-models`` files) on a 5-point alignment.
  Works offline. On aligned face crops (the built-in set, or crops made by :mod:`deblur.faces`) the whole
  crop is the face rectangle; on other photos dlib's HOG frontal detector finds the face first.
- ``"facenet"``: facenet-pytorch's InceptionResnetV1 trained on VGGFace2 (512-d). Only when its weights
  are cached in the torch hub folder or can be downloaded; otherwise :class:`EmbedderUnavailable` is raised.
  It is never run with random weights: those map every face to nearly the same vector.

Distances: L2 between embeddings, and a *centred* cosine similarity. Raw dlib cosines are compressed
(different people still score ≈0.8, see ASSETS.md), so the cosine is taken after subtracting the mean
embedding of a reference set (the clean gallery).
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from deblur.degrade import as_image, to_uint8

__all__ = ["EMBEDDERS", "DlibEmbedder", "Embedder", "EmbedderUnavailable", "FacenetEmbedder", "centred_cosine",
           "get_embedder", "l2_distance"]


class EmbedderUnavailable(RuntimeError):
    """The requested embedder cannot run here (missing weights or packages)."""


@runtime_checkable
class Embedder(Protocol):
    """A face embedder.

    Attributes:
        key: its name in :data:`EMBEDDERS` (``get_embedder(key)`` builds another like it).
        name: key written into every report row (e.g. ``"dlib-resnet-v1"``).
        dim: embedding length.
    """

    key: str
    name: str
    dim: int

    def embed(self, img: np.ndarray) -> np.ndarray | None:
        """Embed one face image (``HxWx3``); ``None`` when no usable face is found."""
        ...

    def embed_batch(self, imgs: Sequence[np.ndarray]) -> list[np.ndarray | None]:
        """Embed several images; one entry (or ``None``) per image."""
        ...


def _face_models_dir() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise EmbedderUnavailable("the dlib embedder needs the face-recognition-models package: "
                                  "pip install face-recognition-models dlib-bin")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


@functools.lru_cache(maxsize=1)
def _dlib_models():
    try:
        import dlib
    except ImportError as exc:  # pragma: no cover - dlib-bin is a project dependency
        raise EmbedderUnavailable("the dlib embedder needs dlib: pip install dlib-bin") from exc
    models = _face_models_dir()
    files = {"shape": models / "shape_predictor_5_face_landmarks.dat",
             "resnet": models / "dlib_face_recognition_resnet_model_v1.dat"}
    reinstall = "reinstall it: pip install --force-reinstall face-recognition-models"
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise EmbedderUnavailable(f"dlib model files are missing: {', '.join(missing)}; {reinstall}")
    loaded = {}
    for key, load in (("shape", dlib.shape_predictor), ("resnet", dlib.face_recognition_model_v1)):
        try:
            loaded[key] = load(str(files[key]))
        except RuntimeError as exc:  # dlib's own message ("Error deserializing ...") does not name the file
            reason = str(exc).strip().splitlines()[0][:200]
            raise EmbedderUnavailable(f"dlib model file {files[key]} is damaged ({reason}); {reinstall}") from exc
    return dlib, loaded["shape"], loaded["resnet"], dlib.get_frontal_face_detector()


class DlibEmbedder:
    key = "dlib"  # its name in EMBEDDERS / get_embedder
    """dlib ResNet face embedding (128-d) on a 5-point alignment.

    Args:
        whole_crop: treat the whole image as the face rectangle (right for aligned face crops such as the
            built-in set). With ``False``, dlib's HOG frontal detector finds the largest face first and
            :meth:`embed` returns ``None`` if it finds none.
        upsample: HOG detector upsampling steps (only with ``whole_crop=False``).
        jitter: dlib's ``num_jitters`` (1 = no jitter; more is slower and slightly more stable).
        min_eye_distance: landmarks whose eyes are closer than this (pixels) count as a failed alignment.
    """

    dim = 128

    def __init__(self, whole_crop: bool = True, upsample: int = 1, jitter: int = 1, min_eye_distance: float = 4.0):
        self._dlib, self._shape, self._resnet, self._detector = _dlib_models()
        self.whole_crop = whole_crop
        self.upsample = upsample
        self.jitter = jitter
        self.min_eye_distance = min_eye_distance
        self.name = "dlib-resnet-v1" + ("" if whole_crop else "-hog")  # what reports record

    def landmarks(self, img: np.ndarray) -> np.ndarray | None:
        """The five dlib landmarks (``5x2``, x/y pixels) of the face, or ``None`` when none is found."""
        shape = self._shape_of(to_uint8(img))
        return None if shape is None else np.array([[shape.part(k).x, shape.part(k).y] for k in range(5)], float)

    def _shape_of(self, u8: np.ndarray):
        h, w = u8.shape[:2]
        if self.whole_crop:
            rect = self._dlib.rectangle(0, 0, w - 1, h - 1)
        else:
            rects = sorted(self._detector(u8, self.upsample), key=lambda r: r.area(), reverse=True)
            if not rects:
                return None
            rect = rects[0]
        shape = self._shape(u8, rect)
        # Points 0-1 are one eye's corners, 2-3 the other's: a collapsed alignment is no face.
        eye_a = np.array([(shape.part(0).x + shape.part(1).x) / 2, (shape.part(0).y + shape.part(1).y) / 2])
        eye_b = np.array([(shape.part(2).x + shape.part(3).x) / 2, (shape.part(2).y + shape.part(3).y) / 2])
        return shape if np.linalg.norm(eye_a - eye_b) >= self.min_eye_distance else None

    def embed(self, img: np.ndarray) -> np.ndarray | None:
        """128-d embedding of the (largest) face, or ``None`` if no face / alignment failed."""
        u8 = to_uint8(img)
        shape = self._shape_of(u8)
        if shape is None:
            return None
        return np.asarray(self._resnet.compute_face_descriptor(u8, shape, self.jitter), dtype=np.float64)

    def embed_batch(self, imgs: Sequence[np.ndarray]) -> list[np.ndarray | None]:
        """Embed images one by one (dlib's CPU build gains nothing from batching here)."""
        return [self.embed(img) for img in imgs]


FACENET_WEIGHTS = "20180402-114759-vggface2.pt"


class FacenetEmbedder:
    """facenet-pytorch InceptionResnetV1 (VGGFace2), 512-d, on a 160-px resize of an aligned face crop.

    Raises:
        EmbedderUnavailable: when the VGGFace2 weights are neither cached nor downloadable.
    """

    dim = 512
    key = "facenet"  # its name in EMBEDDERS / get_embedder
    name = "facenet-vggface2"

    def __init__(self, device: str = "cpu"):
        import torch
        from facenet_pytorch import InceptionResnetV1

        cached = Path(torch.hub.get_dir()) / "checkpoints" / FACENET_WEIGHTS
        try:
            # pretrained= loads the cached file or downloads it; it raises (never falls back to random
            # weights) when neither works, which we turn into a clear message.
            self._net = InceptionResnetV1(pretrained="vggface2").eval().to(device)
        except Exception as exc:  # noqa: BLE001 - any download/load failure means "unavailable"
            raise EmbedderUnavailable(
                f"facenet VGGFace2 weights are not cached at {cached} and could not be downloaded ({exc}). "
                f"Put {FACENET_WEIGHTS} there or use --embedder dlib."
            ) from exc
        self._torch = torch
        self.device = device

    def embed(self, img: np.ndarray) -> np.ndarray | None:
        """512-d embedding of an aligned face crop (the whole image is the face)."""
        return self.embed_batch([img])[0]

    def embed_batch(self, imgs: Sequence[np.ndarray]) -> list[np.ndarray | None]:
        """Embed a batch of aligned face crops in one forward pass."""
        import cv2

        if not len(imgs):
            return []
        x = np.stack([cv2.resize(as_image(i), (160, 160), interpolation=cv2.INTER_AREA) for i in imgs])
        t = self._torch.from_numpy((x * 255.0 - 127.5) / 128.0).permute(0, 3, 1, 2).float().to(self.device)
        with self._torch.inference_mode():
            out = self._net(t).cpu().numpy().astype(np.float64)
        return list(out)


EMBEDDERS = {"dlib": DlibEmbedder, "facenet": FacenetEmbedder}


def get_embedder(name: str = "dlib", **kwargs) -> Embedder:
    """Build an embedder by name.

    Raises:
        ValueError: for an unknown name (the message lists the known ones).
        EmbedderUnavailable: when the embedder's weights or packages are missing.
    """
    if name not in EMBEDDERS:
        raise ValueError(f"unknown embedder {name!r}; choose one of {sorted(EMBEDDERS)}")
    return EMBEDDERS[name](**kwargs)


def l2_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Euclidean distance between two embeddings."""
    return float(np.linalg.norm(np.asarray(a, float) - np.asarray(b, float)))


def centred_cosine(a: np.ndarray, b: np.ndarray, centre: np.ndarray | None = None) -> float:
    """Cosine similarity after subtracting ``centre`` (the reference set's mean embedding) from both.

    Identical embeddings give 1. With ``centre=None`` it is the raw cosine.
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    if centre is not None:
        a, b = a - centre, b - centre
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        return 1.0 if np.allclose(a, b) else 0.0
    return float(np.clip(a @ b / (na * nb), -1.0, 1.0))
