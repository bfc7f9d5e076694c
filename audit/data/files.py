"""Reading a data folder safely: paths kept inside the folder, image files, label CSVs, skip reasons.

Every loader of :mod:`audit.data.loaders` uses these, so a row is skipped for the same reasons, with the same
words, whatever the format.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["BAD_LABEL", "DUPLICATE", "IMAGE_EXTENSIONS", "MISSING", "NOT_IMAGE_EXT", "OUTSIDE", "UNKNOWN", "check_path",
           "clean_label", "data_root", "image_files", "labels_frame", "read_csv", "split_rows"]

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"})
UNKNOWN = "unknown"

# Skip reasons, shared by all loaders so reports can count them.
OUTSIDE = "outside data folder"
MISSING = "missing file"
NOT_IMAGE_EXT = "not an image extension"
BAD_LABEL = "bad label"
DUPLICATE = "duplicate path"


def data_root(root: str | os.PathLike) -> Path:
    """The resolved data folder, or ``FileNotFoundError`` saying which folder is missing."""
    path = Path(root).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"data folder not found: {path}. Pass the folder that holds the images.")
    return path.resolve()


def check_path(root: Path, relative: str) -> tuple[Path | None, str | None]:
    """Resolve ``relative`` against ``root``: ``(path, None)`` if usable, else ``(None, reason)``."""
    relative = relative.strip()
    if not relative:
        return None, MISSING
    path = (root / relative).resolve()  # resolves '..' and symlinks: a link out of root is caught below
    if not path.is_relative_to(root):
        return None, OUTSIDE
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        return None, NOT_IMAGE_EXT
    if not path.is_file():
        return None, MISSING
    return path, None


def image_files(root: Path) -> list[Path]:
    """Every image file under ``root`` (by extension), sorted."""
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def split_rows(root: Path, rows: list[dict], relative_key: str = "path") -> tuple[list[dict], list[dict]]:
    """Resolve each row's relative path; rows that fail go to the skipped list with a reason."""
    kept, skipped, seen = [], [], set()
    for row in rows:
        relative = str(row[relative_key])
        path, reason = check_path(root, relative)
        if reason is None and str(path) in seen:
            reason = DUPLICATE
        if reason is not None:
            skipped.append({"id": str(row.get("id", relative)), "path": relative, "reason": reason})
            continue
        seen.add(str(path))
        kept.append({**row, "path": str(path)})
    return kept, skipped


def labels_frame(rows: list[dict], group_columns: Sequence[str], extra: Sequence[str] = ()) -> pd.DataFrame:
    """The ``frame`` of a :class:`~audit.data.labelled.LabelledFaces`: ``id``, ``path``, groups (cleaned), extras."""
    columns = ["id", "path", *group_columns, *extra]
    frame = pd.DataFrame(rows, columns=columns) if rows else pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    for column in group_columns:
        frame[column] = frame[column].map(clean_label)
    return frame.reset_index(drop=True)


def clean_label(value: object) -> str:
    """A label as stripped text; missing or empty labels become :data:`UNKNOWN`."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return UNKNOWN
    text = str(value).strip()
    return text if text else UNKNOWN


def read_csv(path: Path, what: str) -> pd.DataFrame:
    """A label CSV as text columns, with a message saying how to save it when it cannot be read."""
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"could not read {what} {path}: {exc}. Save it as UTF-8, comma-separated text with a header "
                         f"row.") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame
