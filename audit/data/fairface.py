"""FairFace's validation split from the Hugging Face Hub: real faces with annotated race, gender and age.

The Hub copy ``HuggingFaceM4/FairFace`` (config ``0.25``: faces cropped with 25% padding, 224×224 JPEG;
split ``validation``: 10,954 faces in one ~63 MB parquet file, CC BY 4.0) is downloaded once into
``deblur.data.cache_dir()/fairface``, verified (readable parquet, expected columns and row count) and
recorded with the sha256 of each file in a small JSON next to it; later calls read the cache without
touching the network. :func:`fairface_faces` draws a stratified, seeded sample (``n_per_group`` faces per
group) and returns a :class:`audit.data.labelled.LabelledFaces` with the JPEG bytes in memory, so the audit
iterates it like any other source with :func:`audit.data.labelled.iter_images`.

When the Hub cannot be reached, :class:`DatasetUnavailable` says what could not be downloaded. Callers
must show that message and let the user choose the built-in set; they never switch silently.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import huggingface_hub
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from audit.data.labelled import LabelledFaces, skips_frame
from deblur.data import cache_dir
from deblur.io import ImageError, decode_image

__all__ = ["AGE_NAMES", "ATTRIBUTION", "COLUMNS", "EXPECTED_ROWS", "FAIRFACE_NOTES", "GENDER_NAMES", "GROUPABLE",
           "RACE_NAMES", "REPO_ID", "DatasetUnavailable", "age_name", "download_fairface", "fairface_faces",
           "hub_download"]

# FairFace's nine age labels, in the dataset card's class-label order; UTKFace ages (years) are labelled the
# same way (age_name) so the two sets compare. Not audit.groups.AGE_EDGES (the predicted-age bins).
AGE_NAMES = ("0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "more than 70")
_AGE_STARTS = (0, 3, 10, 20, 30, 40, 50, 60, 70)

FAIRFACE_NOTES = (
    "FairFace (Kärkkäinen & Joo, WACV 2021), CC BY 4.0: https://github.com/joojs/fairface",
    "FairFace race, gender and age labels are annotator judgements from the photo, not self-reported; "
    "'race' is a perceived category, not skin tone.",
)

REPO_ID = "HuggingFaceM4/FairFace"
CONFIG = "0.25"
SPLIT = "validation"
FILE_PATTERN = f"{CONFIG}/{SPLIT}-*.parquet"
EXPECTED_ROWS = 10_954
DOWNLOAD_MB = 63
COLUMNS = ("image", "age", "gender", "race", "service_test")
# Class-label order as in the dataset card's ``dataset_info`` (checked against the Hub's README.md).
GENDER_NAMES = ("Male", "Female")
RACE_NAMES = ("East Asian", "Indian", "Black", "White", "Middle Eastern", "Latino_Hispanic", "Southeast Asian")
_LABEL_NAMES = {"age": AGE_NAMES, "gender": GENDER_NAMES, "race": RACE_NAMES}
GROUPABLE = tuple(_LABEL_NAMES)
ATTRIBUTION = ("FairFace, Kärkkäinen & Joo 2021, CC BY 4.0 (https://github.com/joojs/fairface); Hub copy "
               f"{REPO_ID}, config {CONFIG}, {SPLIT} split")
_RECORD = f"fairface-{CONFIG}-{SPLIT}.json"

ProgressFn = Callable[[float, str], object]
"""``progress(fraction, message)``; a ``gr.Progress()`` instance fits."""
Downloader = Callable[[Path, "ProgressFn | None"], Sequence[str | os.PathLike]]
"""``download(dest, progress) -> parquet files``; :func:`hub_download` or a stand-in for tests."""


def age_name(years: int) -> str:
    """FairFace's age label (one of :data:`AGE_NAMES`) for an age in years."""
    index = int(np.searchsorted(_AGE_STARTS, years, side="right")) - 1
    return AGE_NAMES[max(index, 0)]


class DatasetUnavailable(RuntimeError):
    """A downloadable dataset could not be fetched or verified; the message says what and what to do instead."""


def _offline_message(what: str, exc: BaseException) -> str:
    return (f"Could not download {what} from the Hugging Face Hub ({type(exc).__name__}: {exc}). Check the internet "
            f"connection (or HF_ENDPOINT / proxy settings) and try again, or run the audit on the built-in generated "
            f"faces instead (their groups are predictions, not labels).")


def _network_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "the Hub could not be reached" (HfHubHTTPError and LocalEntryNotFoundError are OSErrors)."""
    errors: list[type[BaseException]] = [OSError, ConnectionError, TimeoutError]
    for module in ("httpx", "httpx2", "requests"):
        try:
            mod = __import__(module)
        except ImportError:
            continue
        for name in ("HTTPError", "RequestException"):
            if isinstance(getattr(mod, name, None), type):
                errors.append(getattr(mod, name))
    return tuple(errors)


def _progress_tqdm(progress: ProgressFn | None):
    """A tqdm class that also forwards byte progress to ``progress`` (e.g. a ``gr.Progress``)."""
    if progress is None:
        return None
    class _Forwarding(tqdm):
        def update(self, n: float | None = 1):
            shown = super().update(n)
            if self.unit == "B" and self.total:
                progress(min(self.n / self.total, 1.0), f"Downloading FairFace: {self.n / 1e6:.0f} of "
                                                        f"{self.total / 1e6:.0f} MB")
            return shown

    return _Forwarding


def hub_download(dest: Path, progress: ProgressFn | None = None) -> list[Path]:
    """Download the FairFace validation parquet file(s) from the Hub into ``dest`` (the real network path)."""
    folder = huggingface_hub.snapshot_download(REPO_ID, repo_type="dataset", allow_patterns=FILE_PATTERN,
                                               local_dir=dest, tqdm_class=_progress_tqdm(progress))
    return sorted(Path(folder).glob(FILE_PATTERN))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify(files: Sequence[Path], expected_rows: int | None) -> int:
    """Check the parquet files are readable with FairFace's columns; return the row count."""
    rows = 0
    for path in files:
        try:
            schema = pq.read_schema(path)
            rows += pq.ParquetFile(path).metadata.num_rows
        except (OSError, pa.ArrowException) as exc:
            raise DatasetUnavailable(f"downloaded file {path} is not readable parquet ({exc}); delete it and try "
                                     f"again") from exc
        missing = [c for c in COLUMNS if c not in schema.names]
        if missing:
            raise DatasetUnavailable(f"downloaded file {path} lacks FairFace columns {missing} (has {schema.names}); "
                                     f"the Hub copy may have changed. Delete it and report the problem.")
    if expected_rows is not None and rows != expected_rows:
        raise DatasetUnavailable(f"FairFace {SPLIT} has {rows} rows, expected {expected_rows}: the download is "
                                 f"incomplete or the Hub copy changed. Delete {files[0].parent} and try again.")
    return rows


def _cached(folder: Path) -> list[Path] | None:
    """The recorded files if they are all present with their recorded sha256, else None."""
    record = folder / _RECORD
    if not record.is_file():
        return None
    try:
        entries = json.loads(record.read_text(encoding="utf-8"))["files"]
    except (ValueError, KeyError, TypeError):
        return None
    files = [folder / e["name"] for e in entries]
    for path, entry in zip(files, entries, strict=True):
        if not path.is_file() or path.stat().st_size != entry["bytes"] or _sha256(path) != entry["sha256"]:
            return None
    return files or None


def download_fairface(cache: str | os.PathLike | None = None, download: Downloader = hub_download,
                      progress: ProgressFn | None = None, expected_rows: int | None = EXPECTED_ROWS) -> list[Path]:
    """Make sure FairFace's validation parquet is in the cache; download and verify it if not.

    Args:
        cache: folder for the files (default ``deblur.data.cache_dir()/fairface``).
        download: the function that fetches the files (:func:`hub_download`; tests inject a stand-in).
        progress: ``progress(fraction, message)`` callback, e.g. ``gr.Progress()``.
        expected_rows: rows the split must have (``None`` skips that check).

    Returns:
        The parquet files. A verified cache returns at once without calling ``download``.

    Raises:
        DatasetUnavailable: if the Hub cannot be reached or what arrived fails verification.
    """
    folder = Path(cache) if cache is not None else cache_dir() / "fairface"
    cached = _cached(folder)
    if cached is not None:
        return cached
    folder.mkdir(parents=True, exist_ok=True)
    what = f"FairFace ({REPO_ID}, config {CONFIG}, {SPLIT} split, about {DOWNLOAD_MB} MB)"
    if progress is not None:
        progress(0.0, f"Downloading {what}")
    try:
        files = sorted(Path(f) for f in download(folder, progress))
    except _network_errors() as exc:
        raise DatasetUnavailable(_offline_message(what, exc)) from exc
    if not files:
        raise DatasetUnavailable(f"the Hub returned no files matching {FILE_PATTERN} for {REPO_ID}; the dataset layout "
                                 f"may have changed. Use the built-in faces, or point the folder loader at a local "
                                 f"FairFace copy.")
    if progress is not None:
        progress(1.0, "Verifying FairFace download")
    rows = _verify(files, expected_rows)
    entries = []
    for path in files:
        name = path.resolve().relative_to(folder.resolve()).as_posix() if path.resolve().is_relative_to(
            folder.resolve()) else str(path.resolve())
        entries.append({"name": name, "bytes": path.stat().st_size, "sha256": _sha256(path)})
    record = {"repo_id": REPO_ID, "config": CONFIG, "split": SPLIT, "rows": rows, "files": entries,
              "downloaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "licence": "CC BY 4.0"}
    tmp = folder / (_RECORD + ".tmp")
    tmp.write_text(json.dumps(record, indent=2), encoding="utf-8")
    os.replace(tmp, folder / _RECORD)
    return files


def _label_names(schema: pa.Schema) -> dict[str, tuple[str, ...]]:
    """Class names from the parquet's ``huggingface`` metadata when present, else the card's order."""
    names = dict(_LABEL_NAMES)
    raw = (schema.metadata or {}).get(b"huggingface")
    if raw:
        try:
            features = json.loads(raw)["info"]["features"]
            for column in names:
                if isinstance(features.get(column), dict) and features[column].get("names"):
                    names[column] = tuple(features[column]["names"])
        except (ValueError, KeyError, TypeError):
            pass  # malformed metadata: the documented order still applies
    return names


def _to_names(codes: pd.Series, names: Sequence[str], column: str) -> pd.Series:
    out = pd.Series([names[c] if 0 <= c < len(names) else None for c in codes.astype(int)], index=codes.index)
    if out.isna().any():
        bad = sorted(set(codes[out.isna()].tolist()))
        raise DatasetUnavailable(f"FairFace column {column!r} has codes {bad} outside its {len(names)} classes; the "
                                 f"Hub copy may have changed. Delete the cache folder and try again.")
    return out


def fairface_faces(n_per_group: int = 100, group_by: Sequence[str] = ("race",), seed: int = 0,
                   cache: str | os.PathLike | None = None, download: Downloader = hub_download,
                   progress: ProgressFn | None = None, expected_rows: int | None = EXPECTED_ROWS) -> LabelledFaces:
    """A stratified, seeded sample of FairFace's validation split with its labels as groups.

    Args:
        n_per_group: faces to draw from every combination of ``group_by``.
        group_by: label columns that define the strata (any of ``race``, ``gender``, ``age``).
        seed: the same seed (and cache) always gives the same faces.
        cache, download, progress, expected_rows: see :func:`download_fairface`.

    Returns:
        :class:`~audit.data.labelled.LabelledFaces` with ``source="fairface-hub"``, rows interleaved across groups
        (so any prefix is balanced), the JPEG bytes in ``images``,
        all three label columns, ``meta["small_groups"]`` (groups with fewer usable faces than requested,
        also named in ``notes``) and corrupt image rows in ``skipped``.

    Raises:
        ValueError: for a bad ``n_per_group`` or ``group_by``.
        DatasetUnavailable: if the data cannot be downloaded or verified.
    """
    if n_per_group < 1:
        raise ValueError(f"n_per_group must be at least 1, got {n_per_group}")
    group_by = list(group_by)
    unknown = [g for g in group_by if g not in GROUPABLE]
    if not group_by or unknown:
        raise ValueError(f"group_by must name one or more of {GROUPABLE}, got {group_by}")
    files = download_fairface(cache, download, progress, expected_rows)
    table = pa.concat_tables([pq.read_table(f, columns=list(COLUMNS)) for f in files])
    names = _label_names(pq.read_schema(files[0]))
    labels = table.select(["age", "gender", "race", "service_test"]).to_pandas()
    for column in GROUPABLE:
        labels[column] = _to_names(labels[column], names[column], column)
    image_column = table.column("image")
    members_of = labels.groupby(group_by, sort=False).indices
    kept, skipped, images, small = [], [], {}, {}
    for codes in itertools.product(*(range(len(names[g])) for g in group_by)):
        key = tuple(names[g][c] for g, c in zip(group_by, codes, strict=True))
        members = members_of.get(key, members_of.get(key[0], [])) if len(key) == 1 else members_of.get(key, [])
        members = np.asarray(members, dtype=int)
        # Seeded per group by its label codes: adding or removing another group leaves this one's sample alone.
        order = labels.index.to_numpy()[np.random.default_rng([seed, *codes]).permutation(members)]
        taken = 0
        for row_index in order:
            if taken == n_per_group:
                break
            face_id = f"fairface-{SPLIT}-{row_index}"
            cell = image_column[int(row_index)].as_py()
            data = cell.get("bytes") if isinstance(cell, dict) else cell
            try:
                decode_image(data or b"", f"FairFace row {row_index}")
            except ImageError as exc:
                skipped.append({"id": face_id, "path": None, "reason": f"corrupt image: {exc}"})
                continue
            images[face_id] = data
            kept.append({"id": face_id, "path": None, **labels.loc[row_index].to_dict(), "row": int(row_index),
                         "_rank": taken})
            taken += 1
        if taken < n_per_group:
            small[" / ".join(key)] = taken
    extra = [c for c in ("age", "gender", "race") if c not in group_by] + ["service_test", "row"]
    # Interleave the groups (first face of every group, then the second...): a caller that audits only the
    # first k rows still gets a balanced sample.
    frame = pd.DataFrame(kept, columns=["id", "path", *group_by, *extra, "_rank"])
    frame = frame.sort_values("_rank", kind="stable").drop(columns="_rank").reset_index(drop=True)
    notes = [ATTRIBUTION, *FAIRFACE_NOTES[1:],
             f"Stratified sample: up to {n_per_group} faces per {' x '.join(group_by)} group, seed {seed}."]
    if small:
        notes.append(f"Groups below the requested {n_per_group} faces (results for them are less certain): "
                     + ", ".join(f"{g} ({n})" for g, n in small.items()) + ".")
    meta = {"repo_id": REPO_ID, "config": CONFIG, "split": SPLIT, "n_per_group": n_per_group, "seed": seed,
            "group_by": group_by, "small_groups": small, "rows_available": table.num_rows,
            "files": [str(f) for f in files]}
    return LabelledFaces(frame, group_by, label_source="label", root=None, skipped=skips_frame(skipped), notes=notes,
                         images=images, source="fairface-hub", meta=meta)
