"""One way to read the faces of a data set for the audit: the built-in generated set or a folder on disk.

The audit engine (:func:`audit.engine.run_audit`) and the safety sweep (``python -m audit.safety --data``) both
read through :func:`face_source`, so the same ``--data`` gives the same ids in the same order.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from audit.data.labelled import iter_images
from audit.data.loaders import load_dataset
from deblur.data import builtin_faces
from deblur.io import ImageError

__all__ = ["FaceItem", "face_items", "face_source"]

FaceItem = tuple[str, "np.ndarray | None", dict[str, str], "str | None"]  # id, image, labels, skip reason


def face_source(data: str = "builtin", *, labels: str | None = None, fmt: str | None = None,
                n: int = 200) -> tuple[dict, Iterator[FaceItem], int]:
    """The first ``n`` faces of a data set, lazily, with metadata about the source.

    Args:
        data: ``"builtin"`` (generated faces, test split) or a data folder.
        labels: labels CSV (``folder`` format).
        fmt: ``folder``, ``celeba``, ``fairface`` or ``utkface`` (detected when ``None``).
        n: at most this many images, in data order.

    Returns:
        ``(meta, items, total)``: ``meta`` has ``source``, ``group_columns``, ``notes``, ``skipped`` (and
        ``label_source`` for folders); ``items`` yields ``(image_id, image or None, labels, skip_reason)``;
        ``total`` is how many items it yields.
    """
    if data == "builtin":
        faces = builtin_faces(n=4000, seed=0).subset("test")
        meta = {"source": "builtin generated faces, test split", "group_columns": [],
                "notes": [faces.meta.get("source")], "skipped": []}

        def gen():
            for i in range(min(n, len(faces))):
                yield faces.ids[i], faces.image(i), {}, None
        return meta, gen(), min(n, len(faces))
    faces = load_dataset(data, labels=labels, fmt=fmt)
    skipped = [{"id": str(r.get("id")), "path": str(r.get("path")), "reason": str(r.get("reason"))}
               for r in faces.skipped.to_dict("records")]
    meta = {"source": faces.source, "group_columns": list(faces.group_columns), "notes": list(faces.notes),
            "skipped": skipped, "label_source": faces.label_source}
    total = min(n, len(faces))

    def gen():
        for k, (row, image) in enumerate(iter_images(faces)):
            if k >= total:
                return
            labels = {c: str(row[c]) for c in faces.group_columns}
            if isinstance(image, ImageError):
                yield str(row["id"]), None, labels, f"unreadable image: {image}"
            else:
                yield str(row["id"]), image, labels, None
    return meta, gen(), total


def face_items(data: str = "builtin", *, labels: str | None = None, fmt: str | None = None,
               n: int = 200) -> list[tuple[str, np.ndarray, dict[str, str]]]:
    """``(image_id, image, labels)`` of the readable faces of :func:`face_source` (unreadable ones dropped)."""
    _, items, _ = face_source(data, labels=labels, fmt=fmt, n=n)
    return [(image_id, img, lab) for image_id, img, lab, reason in items if reason is None]
