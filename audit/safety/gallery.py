"""The attacker's gallery: clean embeddings of known faces, the built-in one cached on disk, plus the query."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

import numpy as np

from audit.data import face_items
from audit.engine import Gallery, to_crop
from deblur.data import builtin_faces, cache_dir, writable_cache_dir
from deblur.degrade import to_uint8
from deblur.embed import Embedder, get_embedder

__all__ = ["DUPLICATE_DISTANCE", "GalleryFaces", "builtin_gallery", "gallery_from_faces", "gallery_from_folder",
           "with_query"]


DUPLICATE_DISTANCE = 0.1  # gallery faces this close to the query are the same picture (re-encoded), not a match


@dataclass(frozen=True)
class GalleryFaces:
    """Clean photos of the attacker's candidates (never the person), aligned 128-px crops, with ids.

    The parrot obscures them; the learned attacker calibrates its threshold on them. Their clean embeddings
    must be the rows of the clean gallery with the same ids.
    """

    ids: tuple[str, ...]
    images: np.ndarray  # N x 128 x 128 x 3 uint8

    def __post_init__(self):
        if len(self.ids) != len(self.images):
            raise ValueError(f"{len(self.ids)} ids for {len(self.images)} gallery images")

    @classmethod
    def of(cls, ids, images) -> GalleryFaces:
        """Candidates from parallel sequences of ids and 128-px crops (float in [0, 1] or uint8)."""
        ids = tuple(str(i) for i in ids)
        return cls(ids, np.stack([to_uint8(i) for i in images]) if ids else np.zeros((0, 128, 128, 3), np.uint8))

    @functools.cached_property
    def key(self) -> str:
        """A short hash of the ids and photos (names cache files)."""
        h = hashlib.blake2b("\n".join(self.ids).encode(), digest_size=6)
        h.update(np.ascontiguousarray(self.images).tobytes())
        return h.hexdigest()


def gallery_from_faces(faces, embedder: Embedder, n: int | None = None, fmr: float = 0.01, seed: int = 0) -> Gallery:
    """A gallery of the clean embeddings of the first ``n`` faces of a :class:`deblur.data.FaceSet`.

    The threshold is calibrated on these faces' impostor pairs at false-match rate ``fmr``.
    """
    count = len(faces) if n is None else min(int(n), len(faces))
    ids, embs = [], []
    for i in range(count):
        e = embedder.embed(faces.image(i))
        if e is not None:
            ids.append(faces.ids[i])
            embs.append(e)
    return Gallery.build(ids, embs, fmr, seed)


@functools.lru_cache(maxsize=4)
def builtin_gallery(embedder_name: str = "dlib", n: int = 200, seed: int = 0, fmr: float = 0.01) -> Gallery:
    """Clean embeddings of the first ``n`` built-in *test* faces, cached in ``cache_dir()`` (computed once).

    ``embedder_name`` is a key of :data:`deblur.embed.EMBEDDERS` (an embedder's ``.key``, not its report name).

    Embedding 200 faces takes ~16 s on one core; later calls read the ``.npz`` (and this process keeps it).
    """
    embedder = get_embedder(embedder_name)
    path = cache_dir() / f"safety-gallery-{embedder.name}-s{seed}-n{n}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            return Gallery.build([str(i) for i in z["ids"]], list(z["embeddings"]), fmr, seed)
    writable_cache_dir()  # fail now, not after embedding 200 faces
    faces = builtin_faces(4000, seed).subset("test")
    gallery = gallery_from_faces(faces, embedder, n, fmr, seed)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, ids=np.array(gallery.ids), embeddings=gallery.embeddings)
    tmp.replace(path)
    return gallery


def gallery_from_folder(folder: str, embedder: Embedder, n: int = 10_000, seed: int = 0
                        ) -> tuple[Gallery, GalleryFaces]:
    """A gallery of the faces in a folder of photos (other people, the same kind of photo as the query), and
    their crops as the attackers' candidates (the parrot obscures them; the learned attacker calibrates on them).

    Each photo is read, its largest face detected and cut into facedrift's crop geometry, and embedded; the
    threshold is calibrated on their impostor pairs, or is the embedder's published one when there are too few
    (the threshold's ``note`` says so).

    Raises:
        ValueError: when fewer than 2 faces are found.
    """
    ids, embs, crops = [], [], []
    for item in face_items(folder, n=n):
        if item[1] is None:
            continue
        crop = to_crop(item[1], "detect")
        emb = embedder.embed(crop) if crop is not None else None
        if emb is not None:
            ids.append(str(item[0]))
            embs.append(emb)
            crops.append(crop)
    if len(ids) < 2:
        raise ValueError(f"the gallery folder {folder} has {len(ids)} photo(s) with a face; it needs at least 2")
    return Gallery.build(ids, embs, seed=seed, embedder_key=embedder.key), GalleryFaces.of(ids, crops)


def with_query(gallery: Gallery, embedding: np.ndarray, own_id: str = "query") -> Gallery:
    """The gallery plus the original face, keeping the gallery's calibrated threshold.

    Gallery faces closer than :data:`DUPLICATE_DISTANCE` to the query are the same picture (e.g. a built-in
    face uploaded again) and are dropped, so that rank-1 can only point at the query itself.
    """
    if gallery.threshold is None:
        raise ValueError("the gallery has no calibrated threshold: build it from at least 2 faces")
    if own_id in gallery.ids:
        return gallery
    d = np.linalg.norm(gallery.embeddings - np.asarray(embedding, float), axis=1)
    keep = d >= DUPLICATE_DISTANCE
    ids = [i for i, k in zip(gallery.ids, keep, strict=True) if k] + [own_id]
    emb = np.vstack([gallery.embeddings[keep], np.asarray(embedding, float)[None]])
    return Gallery(ids, emb, gallery.centre, gallery.threshold)
