"""The built-in face set: seeded generated faces, filtered like the reference study's data.

No real face dataset can be downloaded where this project is developed, so the built-in set is made by
the DCGAN of the ``gan-face-generate`` package (MIT licence, © 2023 chien liu; trained on the synthetic
DigiFace-1M faces). Its 64×64 faces are upscaled bicubically to the crop size and kept only if OpenCV's
frontal-face Haar cascade finds a face, as the study filtered CelebA (about two in three pass); each kept
face is then re-cut by :func:`deblur.faces.crop_face` -- MTCNN, then dlib's landmarks -- exactly like a
real photo, so built-in faces and photos share one crop geometry.

The faces are synthetic and smooth (64 px native): they are good for training and smoke tests, weak for
demographic claims. Any groups formed on them are *predictions*. Loaders for real datasets a user may
have (CelebA, FairFace, UTKFace, a folder + CSV) live in :mod:`audit.data.loaders` (the audit's data sets).
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from deblur.faces import crop_face, detect_faces

__all__ = ["SPLITS", "CacheNotWritable", "FaceSet", "builtin_faces", "cache_dir", "generate_faces",
           "writable_cache_dir"]

SPLITS = ("train", "val", "test")
_SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
_FORMAT_VERSION = 2  # 2: every face aligned into the crop geometry of deblur.faces (round two)
GENERATOR_CREDIT = "gan-face-generate 1.1.1 DCGAN (MIT, (c) 2023 chien liu), trained on DigiFace-1M synthetic faces"


def cache_dir() -> Path:
    """Where generated data is cached: ``$FACEDRIFT_CACHE`` or ``~/.cache/facedrift``."""
    return Path(os.environ.get("FACEDRIFT_CACHE", Path.home() / ".cache" / "facedrift"))


class CacheNotWritable(OSError):
    """The cache folder cannot be created or written (checked before any work that would fill it)."""


def writable_cache_dir() -> Path:
    """:func:`cache_dir`, created if needed and checked writable *before* work whose result goes there.

    Raises:
        CacheNotWritable: naming the folder and how to choose another.
    """
    path = cache_dir()
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as exc:
        reason = exc.strerror or exc
        raise CacheNotWritable(f"the cache folder {path} cannot be written ({reason}); set FACEDRIFT_CACHE to a "
                               "folder you can write, e.g. FACEDRIFT_CACHE=/tmp/facedrift") from exc
    return path


@functools.lru_cache(maxsize=1)
def _generator():
    # torch and the generator are heavy (seconds) and needed only when faces are not yet in the cache
    import gan_face_generate
    import torch
    from gan_face_generate.models import Generator

    weights = Path(gan_face_generate.__file__).with_name("weights.tar")
    if not weights.is_file():
        raise FileNotFoundError(
            f"gan-face-generate's weights are missing at {weights}; reinstall gan-face-generate==1.1.1"
        )
    net = Generator(0, 3, 100, 64)
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True)["netG_state_dict"])
    return net.eval()


def generate_faces(n: int, seed: int, size: int = 128, start: int = 0) -> np.ndarray:
    """Generate ``n`` raw (unfiltered) faces, deterministically for ``seed``.

    Face ``i`` depends only on ``(seed, start + i)``: latent vectors are drawn per face from a numpy
    generator seeded with ``[seed, index]``, so any slice can be regenerated on its own.

    Returns:
        ``n x size x size x 3`` uint8 array.
    """
    import torch  # heavy (seconds): only when faces are generated, not read from the cache

    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if size < 16:
        raise ValueError(f"size must be >= 16, got {size}")
    z = np.stack([np.random.default_rng([seed, start + i]).standard_normal(100) for i in range(n)]) if n else None
    if z is None:
        return np.zeros((0, size, size, 3), np.uint8)
    with torch.inference_mode():
        out = _generator()(torch.from_numpy(z.astype(np.float32))[:, :, None, None])
    faces64 = ((out.permute(0, 2, 3, 1).numpy() + 1.0) * 127.5).clip(0, 255).astype(np.uint8)
    if size == 64:
        return faces64
    return np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_CUBIC) for f in faces64])


@dataclass
class FaceSet:
    """Face crops with ids and a deterministic split.

    Attributes:
        images: ``N x H x W x 3`` uint8.
        ids: one id per face (``gen-<seed>-<index>`` for generated faces).
        split: ``"train"``, ``"val"`` or ``"test"`` per face.
        meta: how the set was made (seed, candidates tried, kept fraction, source credit).
    """

    images: np.ndarray
    ids: list[str]
    split: np.ndarray
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, split: str) -> FaceSet:
        """Only the faces of one split."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
        keep = np.flatnonzero(self.split == split)
        return FaceSet(self.images[keep], [self.ids[i] for i in keep], self.split[keep], {**self.meta, "split": split})

    def image(self, i: int) -> np.ndarray:
        """Face ``i`` as ``HxWx3`` float32 in ``[0, 1]``."""
        return self.images[i].astype(np.float32) / 255.0

    def floats(self) -> np.ndarray:
        """All faces as ``N x H x W x 3`` float32 in ``[0, 1]``."""
        return self.images.astype(np.float32) / 255.0


def _assign_splits(n: int, seed: int) -> np.ndarray:
    order = np.random.default_rng([seed, 7]).permutation(n)
    bounds = np.cumsum([round(f * n) for f in _SPLIT_FRACTIONS[:-1]])
    split = np.empty(n, dtype="<U5")
    for name, part in zip(SPLITS, np.split(order, bounds), strict=False):
        split[part] = name
    return split


def _aligned(face: np.ndarray, size: int) -> np.ndarray | None:
    """The generated face, if the study's Haar filter finds one, re-cut by :func:`deblur.faces.crop_face`
    from the Haar box exactly as a photo detected with ``method="haar"`` is.

    ``None`` if Haar finds no face or dlib's landmarks disagree with its box (the face is then dropped).
    """
    found = detect_faces(face, "haar", min_size=24)
    if not found:
        return None
    crop = crop_face(face, found[0], size)
    if crop.alignment != "dlib":
        return None
    return (crop.image * 255.0).round().astype(np.uint8)


def builtin_faces(n: int = 4000, seed: int = 0, size: int = 128, cache: bool = True) -> FaceSet:
    """The built-in set: ``n`` generated faces that pass the Haar filter, split 80/10/10.

    Args:
        n: number of faces to keep.
        seed: generation seed; the same seed always gives the same faces, ids and split.
        size: crop side in pixels.
        cache: read/write ``cache_dir()/builtin-v1-s<seed>-n<n>-<size>.npz``.

    Returns:
        A :class:`FaceSet`; ``meta["kept_fraction"]`` reports how many candidates passed the filter.
    """
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    path = cache_dir() / f"builtin-v{_FORMAT_VERSION}-s{seed}-n{n}-{size}.npz"
    if cache and path.is_file():
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            return FaceSet(z["images"], [str(i) for i in z["ids"]], z["split"].astype("<U5"), meta)
    if cache:
        writable_cache_dir()  # fail now, not after minutes of generation
    kept, ids, tried, batch = [], [], 0, 256
    while len(kept) < n:
        faces = generate_faces(batch, seed, size, start=tried)
        for j, face in enumerate(faces):
            aligned = _aligned(face, size) if len(kept) < n else None
            if aligned is not None:
                kept.append(aligned)
                ids.append(f"gen-{seed}-{tried + j}")
        tried += batch
        if tried > 20 * n + 1024:
            raise RuntimeError(f"only {len(kept)} of {tried} generated faces passed the Haar filter")
    last = int(ids[-1].rsplit("-", 1)[1]) + 1  # candidates actually looked at before the n-th kept face
    meta = {"seed": seed, "size": size, "n": n, "candidates": last, "kept_fraction": round(n / last, 4),
            "filter": "OpenCV haarcascade_frontalface_default, minNeighbors=5; dlib landmarks agree with its box",
            "source": GENERATOR_CREDIT, "upscale": "bicubic from 64x64",
            "alignment": "deblur.faces.crop_face (the same path as real photos)"}
    faces = FaceSet(np.stack(kept), ids, _assign_splits(n, seed), meta)
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, images=faces.images, ids=np.array(ids), split=faces.split, meta=json.dumps(meta))
        os.replace(tmp, path)
    return faces
