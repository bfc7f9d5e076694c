"""Real photographs that ship with installed packages: texture for training, a real-photo test split.

The built-in faces are 64-px generated faces upscaled to 128 px: smooth, with none of the fine texture,
noise and JPEG of a saved photograph. Models trained only on them lose their edge on real faces
(``shared/TRAINING.md``). This module supplies what we can get offline:

- **Training texture** (:data:`TRAIN_PHOTOS`): scikit-image's bundled natural photographs, cut into random
  crops at random scales, flipped, rotated by 90°, colour-jittered (grey photos get a random tint).
- **Real test split** (never used for training): two real faces, :data:`REAL_FACES` (scikit-image's
  ``astronaut``, matplotlib's ``grace_hopper.jpg``), cropped by :func:`deblur.faces.face_crop` at a few
  margins/shifts, and two natural photographs, :data:`TEST_PHOTOS`, cut into fixed tiles.
- **What a saved photo goes through** after it was blurred: :func:`jpeg` re-encoding, :func:`resize`, and
  :func:`sensor_noise`.

Every random choice goes through an explicit ``np.random.Generator``.
"""

from __future__ import annotations

import functools
from pathlib import Path

import cv2
import matplotlib
import numpy as np
import skimage.data

from deblur.degrade import as_image, to_uint8
from deblur.io import load_image

__all__ = ["REAL_FACES", "TEST_PHOTOS", "TRAIN_PHOTOS", "jpeg", "natural_photo", "photo_artifacts", "real_face_crops",
           "real_split", "folder_faces", "resize", "sensor_noise", "test_tiles", "texture_patches", "with_texture"]

# scikit-image's bundled photographs (no download). Colour and grey natural scenes and textures.
TRAIN_PHOTOS = ("chelsea", "camera", "immunohistochemistry", "grass", "gravel", "brick", "coins", "clock", "moon",
                "hubble_deep_field", "text", "page", "cell")
TEST_PHOTOS = ("coffee", "rocket")  # held out: natural non-face photographs for the texture test
REAL_FACES = ("astronaut", "grace_hopper")  # held out: the real faces we have offline


def _grace_hopper() -> np.ndarray:
    return load_image(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg")


@functools.lru_cache(maxsize=32)
def natural_photo(name: str) -> np.ndarray:
    """One bundled photograph as ``HxWx3`` float32 in ``[0, 1]`` (read-only, cached).

    Raises:
        ValueError: for a name that is not in :data:`TRAIN_PHOTOS`, :data:`TEST_PHOTOS` or :data:`REAL_FACES`.
    """
    if name not in TRAIN_PHOTOS + TEST_PHOTOS + REAL_FACES:
        raise ValueError(f"unknown photo {name!r}; choose one of {TRAIN_PHOTOS + TEST_PHOTOS + REAL_FACES}")
    img = as_image(_grace_hopper() if name == "grace_hopper" else getattr(skimage.data, name)())
    img.setflags(write=False)
    return img


def resize(img: np.ndarray, factor: float) -> np.ndarray:
    """Resize by ``factor`` (area averaging when shrinking, bicubic when enlarging), clipped to ``[0, 1]``."""
    img = as_image(img)
    h, w = img.shape[:2]
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    out = cv2.resize(img, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """Encode as JPEG at ``quality`` (1–100, 4:2:0 chroma as most cameras and sites save) and decode again."""
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    bgr = cv2.cvtColor(to_uint8(img), cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("OpenCV could not encode the image as JPEG")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0


def sensor_noise(img: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Add Gaussian noise of standard deviation ``sigma`` (in ``[0, 1]`` units), clipped."""
    img = as_image(img)
    return np.clip(img + rng.normal(0.0, sigma, img.shape).astype(np.float32), 0.0, 1.0)


def _augment(patch: np.ndarray, rng: np.random.Generator, grey: bool) -> np.ndarray:
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    patch = np.rot90(patch, int(rng.integers(0, 4)))
    if grey:  # a random tint, so grey textures do not teach the model that the world is grey
        patch = patch * rng.uniform(0.7, 1.0, 3).astype(np.float32)
    gain = rng.uniform(0.8, 1.2, 3).astype(np.float32)  # white balance
    mean = patch.mean()
    patch = (patch - mean) * rng.uniform(0.7, 1.3) + mean * rng.uniform(0.8, 1.2)  # contrast, brightness
    return np.clip(patch * gain, 0.0, 1.0)


def texture_patches(n: int, size: int, rng: np.random.Generator, photos=TRAIN_PHOTOS,
                    scale: tuple[float, float] = (0.5, 1.5)) -> np.ndarray:
    """``n`` random ``size x size`` crops of natural photographs, as ``n x size x size x 3`` uint8.

    Each crop picks a photo, a scale in ``scale`` (a crop of ``size / scale`` photo pixels resized to
    ``size``), a position, a flip, a 90° rotation and a colour jitter.
    """
    if n < 0 or size < 8:
        raise ValueError(f"need n >= 0 and size >= 8, got n={n}, size={size}")
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        name = photos[int(rng.integers(0, len(photos)))]
        img = natural_photo(name)
        h, w = img.shape[:2]
        s = float(np.exp(rng.uniform(np.log(scale[0]), np.log(scale[1]))))
        side = min(h, w, max(8, round(size / s)))
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        patch = img[y:y + side, x:x + side]
        patch = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA if side > size else cv2.INTER_CUBIC)
        grey = bool(np.allclose(img[..., 0], img[..., 1]) and np.allclose(img[..., 1], img[..., 2]))
        out[i] = to_uint8(_augment(np.clip(patch, 0, 1), rng, grey))
    return out


def test_tiles(size: int = 128, per_photo: int = 8, photos=TEST_PHOTOS) -> dict[str, np.ndarray]:
    """Fixed (deterministic) ``size``-px tiles of the held-out natural photographs, ``name#k -> HxWx3 float``.

    Tiles are taken at native resolution on an even grid over each photo (no randomness).
    """
    out = {}
    for name in photos:
        img = natural_photo(name)
        h, w = img.shape[:2]
        cols = max(1, int(np.ceil(np.sqrt(per_photo * w / h))))
        rows = int(np.ceil(per_photo / cols))
        ys = np.linspace(0, h - size, rows).round().astype(int)
        xs = np.linspace(0, w - size, cols).round().astype(int)
        for k, (y, x) in enumerate([(y, x) for y in ys for x in xs][:per_photo]):
            out[f"{name}#{k}"] = np.ascontiguousarray(img[y:y + size, x:x + size])
    return out


# (zoom, dx, dy) of the extra crops around the detected face: other margins and small shifts, so the two real
# faces give a few different 128-px views (still only two people: every report states n and the names).
_FACE_VIEWS = ((1.0, 0, 0), (0.85, 0, 0), (1.2, 0, 0), (1.0, 6, -4))


def real_face_crops(size: int = 128, views=_FACE_VIEWS) -> dict[str, np.ndarray]:
    """Aligned ``size``-px crops of the real faces (:data:`REAL_FACES`) by :func:`deblur.faces.face_crop`.

    Each face gives ``len(views)`` crops: the standard crop and crops zoomed/shifted around it, made by
    composing the crop's own affine map with the view's zoom and shift (so every view is an aligned crop).
    """
    from deblur.faces import face_crop  # MTCNN (torch) is heavy; only this function needs it

    out = {}
    for name in REAL_FACES:
        photo = natural_photo(name)
        crop = face_crop(photo, size)
        for k, (zoom, dx, dy) in enumerate(views):
            m = np.vstack([crop.matrix, [0, 0, 1]])
            c = size / 2
            view = np.array([[zoom, 0, c - zoom * c + dx], [0, zoom, c - zoom * c + dy], [0, 0, 1]]) @ m
            img = cv2.warpAffine(photo, view[:2], (size, size), flags=cv2.INTER_AREA if view[0, 0] < 1 else
                                 cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT101)
            out[f"{name}#{k}"] = np.clip(img, 0, 1).astype(np.float32)
    return out


def with_texture(faces, n: int, rng: np.random.Generator, size: int | None = None):
    """A :class:`deblur.data.FaceSet` whose train split also holds ``n`` :func:`texture_patches`.

    Validation and test splits stay generated faces only; ``meta["texture"]`` records what was added.
    """
    from deblur.data import FaceSet  # data imports torch for the generator; keep texture light to import

    if n <= 0:
        return faces
    size = size or faces.images.shape[1]
    patches = texture_patches(n, size, rng)
    ids = faces.ids + [f"texture-{i}" for i in range(n)]
    split = np.concatenate([faces.split, np.full(n, "train", dtype=faces.split.dtype)])
    meta = {**faces.meta, "texture": f"{n} random crops of {', '.join(TRAIN_PHOTOS)} (deblur.texture)"}
    return FaceSet(np.concatenate([faces.images, patches]), ids, split, meta)


def photo_artifacts(jpeg_p: float, noise_p: float, quality: tuple[int, int] = (50, 95), max_noise: float = 0.01):
    """``(img, rng) -> img``: with probability ``noise_p`` sensor noise (σ up to ``max_noise``), then with
    probability ``jpeg_p`` JPEG re-encoding at a quality in ``quality``, as a saved photo goes through."""
    if not (0 <= jpeg_p <= 1 and 0 <= noise_p <= 1):
        raise ValueError(f"probabilities must be in [0, 1], got jpeg={jpeg_p}, noise={noise_p}")

    def apply(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if rng.random() < noise_p:
            img = sensor_noise(img, rng, float(rng.uniform(0.001, max_noise)))
        if rng.random() < jpeg_p:
            img = jpeg(img, int(rng.integers(quality[0], quality[1] + 1)))
        return img

    return apply


PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def folder_faces(folder: str | Path, size: int = 128) -> tuple[dict[str, np.ndarray], list[str]]:
    """The largest face of every photo in ``folder`` (not recursive, no symlinks) as an aligned ``size`` crop.

    A photo that already is ``size x size`` is taken as a crop as it is. Returns ``(crops, skipped)``:
    crops by file name, and ``"name: reason"`` for every photo without a usable face.

    Raises:
        ValueError: if ``folder`` is not a folder or holds no photo.
    """
    from deblur.faces import NoFaceError, face_crop  # MTCNN (torch) is heavy; only this function needs it
    from deblur.io import ImageError

    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"--data {folder}: not a folder; give a folder of photos, 'builtin', 'real-faces' or "
                         "'real-photos'")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES and p.is_file()
                   and not p.is_symlink())
    if not files:
        raise ValueError(f"--data {folder}: no photo ({', '.join(PHOTO_SUFFIXES)}) in the folder")
    crops, skipped = {}, []
    for path in files:
        try:
            img = load_image(path)
            crops[path.name] = img if img.shape[:2] == (size, size) else face_crop(img, size).image
        except (ImageError, NoFaceError) as exc:
            skipped.append(f"{path.name}: {exc}")
    return crops, skipped


def real_split(name: str, size: int = 128) -> dict[str, np.ndarray]:
    """The held-out real images by name: ``real-faces`` (:func:`real_face_crops`) or ``real-photos``
    (:func:`test_tiles`)."""
    if name == "real-faces":
        return real_face_crops(size)
    if name == "real-photos":
        return test_tiles(size)
    raise ValueError(f"unknown real split {name!r}; choose real-faces or real-photos")
