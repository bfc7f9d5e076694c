"""Face embedders behind one small interface, and the identity distances the audit reports.

Two embedders:

- ``"dlib"``: dlib's ResNet (128-d, from the CC0 ``face-recognition-models`` files). Works offline. On face
  crops (the built-in set, or crops made by :mod:`deblur.faces`) it uses the one crop geometry documented in
  :mod:`deblur.faces` (fixed landmarks, no search); on other photos dlib's own HOG -> landmarks -> chip.
- ``"facenet"``: facenet-pytorch's InceptionResnetV1 trained on VGGFace2 (512-d). Only when its weights
  are cached in the torch hub folder or can be downloaded; otherwise :class:`EmbedderUnavailable` is raised.
  It is never run with random weights: those map every face to nearly the same vector.

Distances: L2 between embeddings, and a *centred* cosine similarity. Raw dlib cosines are compressed
(different people still score ≈0.8, see ASSETS.md), so the cosine is taken after subtracting the mean
embedding of a reference set (the clean gallery).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

from deblur.degrade import as_image, to_uint8
from deblur.faces import CROP_SIZE, DlibModelError, dlib_models, face_rect, landmarks_5

__all__ = ["EMBEDDERS", "PUBLISHED_THRESHOLDS", "DlibEmbedder", "Embedder", "EmbedderUnavailable", "FacenetEmbedder",
           "PublishedThreshold", "centred_cosine", "get_embedder", "l2_distance"]


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


class DlibEmbedder:
    """dlib ResNet face embedding (128-d) in facedrift's one crop geometry.

    Args:
        geometry: ``"crop"`` (default): the image is an aligned face crop of :mod:`deblur.faces` (any side;
            the geometry scales). dlib's five landmarks are *not searched*: they are the crop geometry's
            :data:`deblur.faces.LANDMARKS_5`, so a clean crop and its degraded and restored versions are
            embedded from exactly the same face region (dlib's landmark search fails on blur). ``"detect"``:
            dlib's own pipeline on any photo -- HOG detector, 5-point shape predictor, chip -- for the
            largest face; :meth:`embed` returns ``None`` when HOG finds no face.
        upsample: HOG detector upsampling steps (``"detect"`` only).
        jitter: dlib's ``num_jitters`` (1 = no jitter; more is slower and slightly more stable).
    """

    key = "dlib"  # its name in EMBEDDERS / get_embedder
    dim = 128
    # dlib's 150-px chip (padding 0.25) reaches about 10 px below a 128-px crop; without a border those
    # rows would be black. Edge replication keeps the chip close to dlib's own pipeline on the photo.
    BORDER = 16

    def __init__(self, geometry: str = "crop", upsample: int = 1, jitter: int = 1):
        if geometry not in ("crop", "detect"):
            raise ValueError(f"geometry must be 'crop' or 'detect', got {geometry!r}")
        try:
            self._dlib, self._shape, self._resnet, self._detector = dlib_models()
        except (ImportError, DlibModelError) as exc:
            raise EmbedderUnavailable(str(exc)) from exc
        self.geometry = geometry
        self.upsample = upsample
        self.jitter = jitter
        # What reports record: the crop geometry changed in round two, so the name says which one.
        self.name = "dlib-resnet-v1-crop5" if geometry == "crop" else "dlib-resnet-v1-hog"

    def landmarks(self, img: np.ndarray) -> np.ndarray | None:
        """The five dlib landmarks (``5x2``, x/y pixels) of the face, or ``None`` when none is found."""
        u8 = to_uint8(img)
        if self.geometry == "crop":
            return landmarks_5(u8.shape[0])
        shape = self._detected_shape(u8)
        return None if shape is None else np.array([[shape.part(k).x, shape.part(k).y] for k in range(5)], float)

    def _detected_shape(self, u8: np.ndarray):
        rects = sorted(self._detector(u8, self.upsample), key=lambda r: r.area(), reverse=True)
        return self._shape(u8, rects[0]) if rects else None

    def _crop_input(self, img: np.ndarray):
        """``(bordered image, full_object_detection)`` for an aligned crop."""
        u8 = to_uint8(img)
        h, w = u8.shape[:2]
        if h != w:
            raise ValueError(f"an aligned face crop is square; got {w}x{h}. Crop it with deblur.faces.face_crop "
                             "or use DlibEmbedder(geometry='detect') for a whole photo")
        b = self.BORDER * h // CROP_SIZE
        bordered = np.ascontiguousarray(cv2.copyMakeBorder(u8, b, b, b, b, cv2.BORDER_REPLICATE))
        x0, y0, x1, y1 = (int(round(v + b)) for v in face_rect(h))
        points = [self._dlib.point(int(round(x + b)), int(round(y + b))) for x, y in landmarks_5(h)]
        return bordered, self._dlib.full_object_detection(self._dlib.rectangle(x0, y0, x1, y1), points)

    def embed(self, img: np.ndarray) -> np.ndarray | None:
        """128-d embedding of the face (``"detect"``: ``None`` if HOG finds no face)."""
        return self.embed_batch([img])[0]

    def embed_batch(self, imgs: Sequence[np.ndarray]) -> list[np.ndarray | None]:
        """Embed several images; aligned crops go through dlib's batch descriptor call at once."""
        if self.geometry == "crop":
            if not len(imgs):
                return []
            pairs = [self._crop_input(img) for img in imgs]
            shapes = []
            for _, shape in pairs:
                one = self._dlib.full_object_detections()
                one.append(shape)
                shapes.append(one)
            out = self._resnet.compute_face_descriptor([p[0] for p in pairs], shapes, self.jitter)
            return [np.asarray(v[0], dtype=np.float64) for v in out]
        result: list[np.ndarray | None] = []
        for img in imgs:
            u8 = to_uint8(img)
            shape = self._detected_shape(u8)
            result.append(None if shape is None else
                          np.asarray(self._resnet.compute_face_descriptor(u8, shape, self.jitter), dtype=np.float64))
        return result


FACENET_WEIGHTS = "20180402-114759-vggface2.pt"


class FacenetEmbedder:
    """facenet-pytorch InceptionResnetV1 (VGGFace2), 512-d, on the :data:`FACENET_BOX` region of an aligned crop.

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
        """512-d embedding of an aligned face crop of :mod:`deblur.faces`."""
        return self.embed_batch([img])[0]

    def embed_batch(self, imgs: Sequence[np.ndarray]) -> list[np.ndarray | None]:
        """Embed a batch of aligned face crops in one forward pass."""
        if not len(imgs):
            return []
        x = np.stack([_facenet_input(as_image(i)) for i in imgs])
        t = self._torch.from_numpy((x * 255.0 - 127.5) / 128.0).permute(0, 3, 1, 2).float().to(self.device)
        with self._torch.inference_mode():
            out = self._net(t).cpu().numpy().astype(np.float64)
        return list(out)


# Where facenet-pytorch's own MTCNN box (its input convention: box, margin 0, resized to 160x160) lands in a
# 128-px crop of deblur.faces: measured on astronaut (21,24)-(107,123) and Grace Hopper (23,22)-(103,136).
# (Its VGGFace2 weights cannot be downloaded where this was written, so its agreement is not tested here.)
FACENET_BOX = (22.0, 23.0, 105.0, 129.0)


def _facenet_input(crop: np.ndarray) -> np.ndarray:
    """The 160x160 input facenet expects, cut from an aligned crop at :data:`FACENET_BOX`."""
    size = crop.shape[0]
    border = size // 8
    padded = cv2.copyMakeBorder(crop, border, border, border, border, cv2.BORDER_REPLICATE)
    x0, y0, x1, y1 = (int(round(v * size / CROP_SIZE)) + border for v in FACENET_BOX)
    return cv2.resize(padded[y0:y1, x0:x1], (160, 160), interpolation=cv2.INTER_AREA)


EMBEDDERS = {"dlib": DlibEmbedder, "facenet": FacenetEmbedder}


@dataclass(frozen=True)
class PublishedThreshold:
    """An embedder's published same-person operating point (L2) and where it is published."""

    distance: float
    source: str


# Only operating points their authors publish. dlib's ResNet: faces of one person are closer than 0.6
# (99.38% on LFW at that threshold; dlib's face_recognition example and model documentation).
# facenet-pytorch publishes none for its VGGFace2 model.
PUBLISHED_THRESHOLDS: dict[str, PublishedThreshold] = {
    "dlib": PublishedThreshold(0.6, "dlib's published operating point for dlib_face_recognition_resnet_model_v1 "
                                    "(same person below 0.6; 99.38% on LFW)"),
}


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
