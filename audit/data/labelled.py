"""The one type every data-set loader returns, and the one way to iterate its images.

Rows point either at a file (``path``, absolute, resolved and inside ``root``) or at an in-memory image
(``images[id]``, e.g. FairFace rows decoded from the Hub's parquet). Files that turn out not to be images are
yielded as :class:`~deblur.io.ImageError` by :func:`iter_images` so the caller counts them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from deblur.degrade import as_image
from deblur.io import ImageError, decode_image, load_image

__all__ = ["LabelledFaces", "iter_images", "skips_frame"]


@dataclass
class LabelledFaces:
    """Faces with group labels from any source: files on disk or images held in memory.

    Attributes:
        frame: one row per face: ``id`` (unique str), ``path`` (absolute resolved path inside ``root``,
            or ``None`` when the image is in ``images``), the ``group_columns`` (str, missing → ``"unknown"``)
            and any extra columns (e.g. ``split``, ``age_years``).
        group_columns: columns that define subgroups for the audit.
        label_source: ``"label"`` (the dataset's labels) or ``"predicted"``.
        root: the data folder every path is inside (``None`` for purely in-memory sets).
        skipped: rows left out, with at least ``id``, ``path`` and ``reason``.
        notes: caveats and licence attribution to show next to any result.
        images: in-memory images by id: encoded bytes (decoded by :func:`iter_images`) or arrays.
        source: the format the faces came from (``"celeba"``, ``"fairface"``, ``"fairface-hub"``...).
        meta: anything else worth reporting (counts, filters, small groups, file hashes).
    """

    frame: pd.DataFrame
    group_columns: list[str]
    label_source: str = "label"
    root: Path | None = None
    skipped: pd.DataFrame = field(default_factory=lambda: skips_frame([]))
    notes: list[str] = field(default_factory=list)
    images: Mapping[str, bytes | np.ndarray] = field(default_factory=dict)
    source: str = "folder"
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.frame)

    def group_counts(self) -> pd.DataFrame:
        """Number of faces per combination of the group columns (``n`` column)."""
        if not self.group_columns:
            return pd.DataFrame({"n": [len(self.frame)]})
        return self.frame.groupby(self.group_columns, observed=True).size().rename("n").reset_index()

    def skip_counts(self) -> dict[str, int]:
        """How many rows were skipped, per reason."""
        return {str(k): int(v) for k, v in self.skipped["reason"].value_counts().items()} if len(self.skipped) else {}


def skips_frame(rows: list[dict]) -> pd.DataFrame:
    """Skipped rows as a frame with at least the columns ``id``, ``path`` and ``reason`` (even when empty)."""
    frame = pd.DataFrame(rows)
    for column in ("id", "path", "reason"):
        if column not in frame:
            frame[column] = pd.Series(dtype=object)
    return frame


def iter_images(faces: LabelledFaces) -> Iterator[tuple[pd.Series, np.ndarray | ImageError]]:
    """Yield ``(row, image)`` for every face, ``image`` being ``HxWx3`` float32 in ``[0, 1]``.

    A face that cannot be read (deleted since loading, not really an image, corrupt bytes) is yielded as
    an :class:`~deblur.io.ImageError` instead of an image, so the caller counts it as a skip and goes on.
    """
    for _, row in faces.frame.iterrows():
        face_id = str(row["id"])
        try:
            if face_id in faces.images:
                stored = faces.images[face_id]
                image = decode_image(stored, f"image {face_id!r}") if isinstance(stored, bytes) else as_image(stored)
            elif isinstance(row.get("path"), str) and row["path"]:
                image = load_image(row["path"])
            else:
                raise ImageError(f"face {face_id!r} has neither a file path nor an in-memory image")
        except FileNotFoundError as exc:
            image = ImageError(f"{exc} (it was there when the data set was loaded)")
        except (ImageError, ValueError) as exc:
            image = exc if isinstance(exc, ImageError) else ImageError(f"image {face_id!r}: {exc}")
        yield row, image
