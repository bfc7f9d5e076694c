"""Loaders for real labelled face datasets a user may have: CelebA, FairFace, UTKFace, a folder + CSV.

Every loader returns one type, :class:`~audit.data.labelled.LabelledFaces`, so the audit iterates any source
the same way with :func:`~audit.data.labelled.iter_images`. Rows point either at a file (``path``, absolute,
resolved and guaranteed to be inside ``root``) or at an in-memory image (``images[id]``, e.g. FairFace rows
decoded from the Hub's parquet, see :mod:`audit.data.fairface`). Nothing is dropped silently: every row a
loader leaves out is in ``skipped`` with a ``reason``, and files that turn out not to be images are yielded as
:class:`~deblur.io.ImageError` by :func:`~audit.data.labelled.iter_images` so the caller counts them.

Groups come from the dataset's own labels (``label_source == "label"``): they are ground truth only in
the sense that annotators (or the people photographed, for none of these sets) gave them; see ``notes``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from audit.data.fairface import AGE_NAMES, FAIRFACE_NOTES, age_name, fairface_faces
from audit.data.files import (
    BAD_LABEL,
    IMAGE_EXTENSIONS,
    UNKNOWN,
    data_root,
    image_files,
    labels_frame,
    read_csv,
    split_rows,
)
from audit.data.labelled import LabelledFaces, skips_frame
from deblur.faces import haar_has_face
from deblur.io import ImageError, load_image

__all__ = ["FORMATS", "IMAGE_EXTENSIONS", "detect_format", "load_celeba", "load_dataset", "load_fairface",
           "load_folder", "load_utkface"]

FORMATS = ("folder", "celeba", "fairface", "utkface")
# --------------------------------------------------------------------------------------------------------------
# Generic folder + CSV


def load_folder(root: str | os.PathLike, labels_csv: str | os.PathLike | None = None,
                group_columns: Sequence[str] | None = None) -> LabelledFaces:
    """A folder of images, optionally with a CSV of labels.

    Args:
        root: the data folder; every image must be inside it.
        labels_csv: CSV with a ``path`` column (relative to ``root``), optionally ``id``, and any group
            columns (e.g. ``gender,age``). Without it: every image under ``root``, no groups.
        group_columns: which CSV columns are groups; default all columns except ``path`` and ``id``.

    Raises:
        FileNotFoundError: if ``root`` or the CSV does not exist.
        ValueError: if the CSV cannot be parsed, has no ``path`` column, or a named group column is missing.
    """
    root_path = data_root(root)
    if labels_csv is None:
        # Same checks as rows of a CSV: a link (file or folder) that resolves outside root is a counted skip.
        relative = [str(p.relative_to(root_path)) for p in image_files(root_path)]
        kept, skipped = split_rows(root_path, [{"id": r, "path": r} for r in relative])
        return LabelledFaces(labels_frame(kept, []), [], root=root_path, skipped=skips_frame(skipped), source="folder",
                             notes=["No labels CSV: all images in the folder, no groups."])
    csv_path = Path(labels_csv).expanduser()
    if not csv_path.is_absolute() and not csv_path.exists():
        csv_path = root_path / csv_path
    table = read_csv(csv_path, "labels CSV")
    by_lower = {c.lower(): c for c in table.columns}
    if "path" not in by_lower:
        raise ValueError(f"labels CSV {csv_path} has columns {list(table.columns)} but needs a 'path' column with each "
                         f"image's path relative to {root_path}, plus any group columns (e.g. 'path,gender,age').")
    table = table.rename(columns={by_lower["path"]: "path"})
    if "id" in by_lower:
        table = table.rename(columns={by_lower["id"]: "id"})
    others = [c for c in table.columns if c not in ("path", "id")]
    if group_columns is None:
        groups = others
    else:
        missing = [c for c in group_columns if c not in table.columns]
        if missing:
            raise ValueError(f"group columns {missing} are not in {csv_path}; it has {others}")
        groups = list(group_columns)
    if "id" not in table:
        table["id"] = table["path"].str.strip()
    elif table["id"].duplicated().any():
        dupes = table.loc[table["id"].duplicated(), "id"].head(3).tolist()
        raise ValueError(f"the 'id' column of {csv_path} repeats ids (e.g. {dupes}); make them unique or drop it")
    kept, skipped = split_rows(root_path, table.to_dict("records"))
    extra = [c for c in others if c not in groups]
    notes = [f"Groups from the columns {groups} of {csv_path.name}; their meaning and accuracy are the data owner's."]
    return LabelledFaces(labels_frame(kept, groups, extra), groups, root=root_path, skipped=skips_frame(skipped),
                         notes=notes, source="folder", meta={"labels_csv": str(csv_path)})


# --------------------------------------------------------------------------------------------------------------
# CelebA

CELEBA_FILTERS = ("Eyeglasses", "Blurry")  # the study kept only faces without eyeglasses that are not blurry
# Attribute → (group column, name for +1, name for -1). Other attributes: (lower-case name, name, "not name").
CELEBA_GROUPS: dict[str, tuple[str, str, str]] = {
    "Male": ("gender", "male", "female"),
    "Young": ("age", "young", "not young"),
    "Pale_Skin": ("pale_skin", "pale skin", "not pale skin"),
}
_CELEBA_SPLITS = {"0": "train", "1": "val", "2": "test"}


def _celeba_images_dir(root: Path) -> Path:
    for candidate in (root / "img_align_celeba" / "img_align_celeba", root / "img_align_celeba"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"no img_align_celeba/ folder in {root}; CelebA's aligned images must be there")


def _read_celeba_attributes(root: Path) -> tuple[list[str], list[tuple[str, list[str]]], list[dict], dict]:
    """Parse list_attr_celeba.txt (count line, names line, rows); the Kaggle CSV variant also works."""
    txt, kaggle = root / "list_attr_celeba.txt", root / "list_attr_celeba.csv"
    bad: list[dict] = []
    if txt.is_file():
        lines = txt.read_text(encoding="utf-8", errors="replace").splitlines()
        if len(lines) < 2:
            raise ValueError(f"{txt} is too short: expected a count line, a line of attribute names, then one row per "
                             f"image")
        names = lines[1].split()
        rows = []
        for number, line in enumerate(lines[2:], start=3):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != len(names) + 1:
                bad.append({"id": parts[0], "path": parts[0],
                            "reason": f"{BAD_LABEL} (line {number}: {len(parts) - 1} values, expected {len(names)})"})
                continue
            rows.append((parts[0], parts[1:]))
        declared = lines[0].strip()
        meta = {"declared_count": int(declared) if declared.isdigit() else None, "attr_file": str(txt),
                "listed_count": len(rows) + len(bad)}
        return names, rows, bad, meta
    if kaggle.is_file():
        table = read_csv(kaggle, "CelebA attribute CSV")
        names = [c for c in table.columns if c != "image_id"]
        return names, [(r[0], list(r[1:])) for r in table[["image_id", *names]].itertuples(index=False)], bad, \
            {"declared_count": None, "attr_file": str(kaggle)}
    raise FileNotFoundError(f"no list_attr_celeba.txt in {root}; CelebA's attribute file must sit next to "
                            f"img_align_celeba/")


def load_celeba(root: str | os.PathLike, groups: Sequence[str] = ("Male", "Young", "Pale_Skin"), detect: bool = False,
                split: str | None = None, has_face: Callable[[np.ndarray], bool] | None = None) -> LabelledFaces:
    """CelebA (aligned) with the reference study's filters.

    Layout: ``root/img_align_celeba/000001.jpg ...``, ``root/list_attr_celeba.txt`` (first line the image
    count, second line the 40 attribute names, then ``000001.jpg  -1  1 ...``), and optionally
    ``root/list_eval_partition.txt`` (``000001.jpg 0``; 0 train, 1 val, 2 test) which adds a ``split`` column.

    Args:
        root: CelebA folder.
        groups: attributes that become group columns (``Male`` → ``gender`` male/female, ``Young`` → ``age``
            young/not young, ``Pale_Skin`` → ``pale_skin``; any other attribute A → column ``a`` with A/not A).
        detect: also keep only images where OpenCV's frontal-face Haar cascade finds a face, as the study did.
            This reads every image (minutes for the full 200k set).
        split: keep only ``"train"``, ``"val"`` or ``"test"`` (needs list_eval_partition.txt).
        has_face: the face test used when ``detect`` (default :func:`deblur.faces.haar_has_face`).
    """
    root_path = data_root(root)
    images_dir = _celeba_images_dir(root_path)
    names, rows, skipped, meta = _read_celeba_attributes(root_path)
    unknown = [a for a in (*CELEBA_FILTERS, *groups) if a not in names]
    if unknown:
        raise ValueError(f"CelebA attributes {unknown} are not in {meta['attr_file']}; it has {names}")
    if split is not None and split not in _CELEBA_SPLITS.values():
        raise ValueError(f"unknown split {split!r}; choose one of {tuple(_CELEBA_SPLITS.values())}")
    partition = {}
    partition_file = root_path / "list_eval_partition.txt"
    if partition_file.is_file():
        for line in partition_file.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.split()
            if len(parts) == 2:
                partition[parts[0]] = _CELEBA_SPLITS.get(parts[1], UNKNOWN)
    elif split is not None:
        raise FileNotFoundError(f"split={split!r} needs {partition_file}, which is missing")
    column_of = {a: CELEBA_GROUPS.get(a, (a.lower(), a, f"not {a}")) for a in groups}
    index = {name: i for i, name in enumerate(names)}
    candidates = []
    for file_name, values in rows:
        if any(v not in ("1", "-1") for v in values):
            skipped.append({"id": file_name, "path": file_name, "reason": f"{BAD_LABEL} (values must be 1 or -1)"})
            continue
        dropped = [a for a in CELEBA_FILTERS if values[index[a]] == "1"]
        if dropped:
            skipped.append({"id": file_name, "path": file_name, "reason": f"filtered: {dropped[0]}"})
            continue
        row = {"id": file_name, "path": str(images_dir.relative_to(root_path) / file_name)}
        for attribute, (column, yes, no) in column_of.items():
            row[column] = yes if values[index[attribute]] == "1" else no
        if partition:
            row["split"] = partition.get(file_name, UNKNOWN)
            if split is not None and row["split"] != split:
                continue
        candidates.append(row)
    kept, bad_paths = split_rows(root_path, candidates)
    skipped.extend(bad_paths)
    if detect:
        if has_face is None:
            has_face = haar_has_face
        with_face = []
        for row in kept:
            try:
                found = has_face(load_image(row["path"]))
            except ImageError:
                skipped.append({"id": row["id"], "path": row["path"], "reason": "not an image"})
                continue
            if found:
                with_face.append(row)
            else:
                skipped.append({"id": row["id"], "path": row["path"], "reason": "filtered: no face (Haar)"})
        kept = with_face
    group_columns = [column for column, _, _ in column_of.values()]
    filters = [f"{a} == -1" for a in CELEBA_FILTERS] + (["Haar frontal face found"] if detect else [])
    notes = ["CelebA (Liu et al., ICCV 2015): for non-commercial research only, see "
             "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html",
             f"Filters as in the reference study: {', '.join(filters)}.",
             "CelebA attributes are binary annotator judgements; 'Pale_Skin' is not a skin-tone measurement and "
             "'Young' has no age in years."]
    if meta["declared_count"] is not None and meta["declared_count"] != meta["listed_count"]:
        notes.append(f"{meta['attr_file']} declares {meta['declared_count']} images but lists {meta['listed_count']}.")
    meta.update(filters=filters, partition=bool(partition))
    extra = ["split"] if partition else []
    return LabelledFaces(labels_frame(kept, group_columns, extra), group_columns, root=root_path,
                         skipped=skips_frame(skipped), notes=notes, source="celeba", meta=meta)


# --------------------------------------------------------------------------------------------------------------
# FairFace (the original release: folders of images + label CSVs)

_FAIRFACE_COLUMNS = ("file", "age", "gender", "race")


def _find_fairface_csv(root: Path) -> Path:
    for name in ("fairface_label_val.csv", "fairface_label_train.csv"):
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(f"no fairface_label_val.csv or fairface_label_train.csv in {root}; pass csv= explicitly")


def load_fairface(root: str | os.PathLike, csv: str | os.PathLike | None = None,
                  groups: Sequence[str] = ("race", "gender", "age")) -> LabelledFaces:
    """FairFace as released: ``root/val/1.jpg ...`` plus ``fairface_label_val.csv``.

    The CSV has columns ``file,age,gender,race,service_test`` with ``file`` like ``val/1.jpg`` (relative to
    ``root``). For the copy on the Hugging Face Hub use :func:`audit.data.fairface.fairface_faces`.

    Args:
        root: FairFace folder.
        csv: label CSV (default ``fairface_label_val.csv``, else ``fairface_label_train.csv`` in ``root``).
        groups: label columns that become group columns.
    """
    root_path = data_root(root)
    csv_path = _find_fairface_csv(root_path) if csv is None else Path(csv).expanduser()
    if not csv_path.is_absolute() and not csv_path.exists():
        csv_path = root_path / csv_path
    table = read_csv(csv_path, "FairFace label CSV")
    missing = [c for c in (*_FAIRFACE_COLUMNS, *groups) if c not in table.columns]
    if missing:
        raise ValueError(f"{csv_path} lacks FairFace columns {missing}; it has {list(table.columns)}. Expected "
                         f"'file,age,gender,race,service_test' as in fairface_label_val.csv.")
    table = table.rename(columns={"file": "path"})
    table["id"] = table["path"].str.strip()
    rows, skipped = [], []
    for row in table.to_dict("records"):
        if row["age"] and row["age"] not in AGE_NAMES and row["age"] != "70+":
            skipped.append({"id": row["id"], "path": row["path"], "reason": f"{BAD_LABEL} (age {row['age']!r})"})
            continue
        rows.append(row)
    kept, bad_paths = split_rows(root_path, rows)
    extra = [c for c in ("age", "gender", "race", "service_test") if c not in groups and c in table.columns]
    return LabelledFaces(labels_frame(kept, list(groups), extra), list(groups), root=root_path,
                         skipped=skips_frame(skipped + bad_paths), notes=list(FAIRFACE_NOTES), source="fairface",
                         meta={"labels_csv": str(csv_path)})


# --------------------------------------------------------------------------------------------------------------
# UTKFace

UTK_GENDERS = ("male", "female")
UTK_RACES = ("White", "Black", "Asian", "Indian", "Others")
_UTK_NAME = re.compile(r"^(\d+)_(\d+)_(\d+)_(\d+)\.jpg(\.chip\.jpg)?$", re.IGNORECASE)
_UTK_MAX_AGE = 116


def load_utkface(root: str | os.PathLike) -> LabelledFaces:
    """UTKFace: labels in file names ``[age]_[gender]_[race]_[date&time].jpg`` (``.jpg.chip.jpg`` for crops).

    Gender 0 male, 1 female; race 0-4 White, Black, Asian, Indian, Others. Ages (0-116 years) are binned
    like FairFace (``age`` column) and kept in years (``age_years``). Images anywhere under ``root``; names
    that do not parse (a few real UTKFace files lack a field) are skipped as bad labels.
    """
    root_path = data_root(root)
    rows, skipped = [], []
    for path in image_files(root_path):
        relative = str(path.relative_to(root_path))
        match = _UTK_NAME.match(path.name)
        reason = None
        if match is None:
            reason = f"{BAD_LABEL} (name is not age_gender_race_datetime.jpg)"
        else:
            age, gender, race = (int(match.group(i)) for i in (1, 2, 3))
            if age > _UTK_MAX_AGE or gender >= len(UTK_GENDERS) or race >= len(UTK_RACES):
                reason = f"{BAD_LABEL} (age {age}, gender {gender}, race {race} out of range)"
        if reason is not None:
            skipped.append({"id": relative, "path": relative, "reason": reason})
            continue
        rows.append({"id": relative, "path": relative, "gender": UTK_GENDERS[gender], "race": UTK_RACES[race],
                     "age": age_name(age), "age_years": age})
    kept, bad_paths = split_rows(root_path, rows)
    notes = ["UTKFace (Zhang, Song & Qi, CVPR 2017): non-commercial research only, "
             "https://susanqq.github.io/UTKFace/",
             "UTKFace labels were estimated by an algorithm and checked by annotators; 'Others' lumps Hispanic, "
             "Latino, Middle Eastern and more."]
    groups = ["race", "gender", "age"]
    return LabelledFaces(labels_frame(kept, groups, ["age_years"]), groups, root=root_path,
                         skipped=skips_frame(skipped + bad_paths), notes=notes, source="utkface")


# --------------------------------------------------------------------------------------------------------------
# Dispatch


def detect_format(root: str | os.PathLike, labels: str | os.PathLike | None = None) -> str:
    """Guess a data folder's format from its files (see :data:`FORMATS`)."""
    root_path = data_root(root)
    if labels is not None:
        csv_path = Path(labels) if Path(labels).is_absolute() or Path(labels).exists() else root_path / labels
        columns = set(read_csv(csv_path, "labels CSV").columns)
        return "fairface" if set(_FAIRFACE_COLUMNS) <= columns and "path" not in columns else "folder"
    if (root_path / "list_attr_celeba.txt").is_file() or (root_path / "list_attr_celeba.csv").is_file():
        return "celeba"
    if any(root_path.glob("fairface_label_*.csv")):
        return "fairface"
    names = [p.name for p in image_files(root_path)[:200]]
    if names and sum(bool(_UTK_NAME.match(n)) for n in names) >= 0.8 * len(names):
        return "utkface"
    return "folder"


def load_dataset(source: str | os.PathLike, root: str | os.PathLike | None = None,
                 labels: str | os.PathLike | None = None, fmt: str | None = None, **options) -> LabelledFaces:
    """Load labelled faces from any supported source; what ``--data`` in the CLI and the app's data box call.

    Args:
        source: a data folder, or a format name from :data:`FORMATS` (then ``root`` is the folder), or
            ``"fairface-hub"`` (download FairFace's validation split from the Hugging Face Hub; ``options``
            go to :func:`audit.data.fairface.fairface_faces`, e.g. ``n_per_group``). ``"fairface"`` without a
            ``root`` means the Hub too, unless a folder of that name exists.
        root: the data folder when ``source`` is a format name.
        labels: a labels CSV (``folder``: ``path`` + groups; ``fairface``: the label CSV).
        fmt: one of :data:`FORMATS`; detected from the files when omitted.
        options: format-specific keyword arguments (e.g. ``detect=True`` for CelebA).

    Raises:
        ValueError: for an unknown format (the message lists the known ones).
        audit.data.fairface.DatasetUnavailable: for ``"fairface-hub"`` when the Hub cannot be reached.
    """
    if str(source) == "fairface-hub" or (str(source) == "fairface" and root is None and not Path(source).exists()):
        return fairface_faces(**options)
    if str(source) in FORMATS and root is None and not Path(source).exists():
        raise ValueError(f"format {source!r} needs root=<the data folder>")
    if str(source) in FORMATS and root is not None:
        if fmt is not None and fmt != str(source):
            raise ValueError(f"source {source!r} and fmt {fmt!r} disagree; pass one of them")
        fmt = str(source)
    else:
        if root is not None:
            raise ValueError(f"got both a data folder {source!r} and root={root!r}; pass the folder once, or a format "
                             f"name from {FORMATS} as source")
        root = source
    if fmt is None:
        fmt = detect_format(root, labels)
    if fmt == "folder":
        return load_folder(root, labels, **options)
    if fmt == "celeba":
        return load_celeba(root, **options)
    if fmt == "fairface":
        return load_fairface(root, labels, **options)
    if fmt == "utkface":
        return load_utkface(root, **options)
    raise ValueError(f"unknown data format {fmt!r}; known formats: {', '.join(FORMATS)} (or 'fairface-hub' to "
                     f"download FairFace)")
