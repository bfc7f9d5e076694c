"""``weights/manifest.json``: the one reader of the shipped models' table, and the sha256 check of their files.

Every learned restorer loaded from a folder that has a ``manifest.json`` listing its file is verified
against the sha256 recorded there (:func:`verify_weights`), whatever path loads it (app, audit, CLI). The
hash of a file is computed once per process and kept while the file's size and modification time stay the
same, so the check costs one read of each file per process.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

__all__ = ["RETRAIN_HINT", "WEIGHTS_DIR", "WeightsError", "load_manifest", "manifest_entry", "offered_models",
           "sha256_file", "verify_weights"]

WEIGHTS_DIR = Path(__file__).resolve().parent.parent.parent / "weights"
RETRAIN_HINT = "retrain it with `python -m deblur.train --help` (see weights/cards/) or restore it from git"
MANIFEST = "manifest.json"

_hashes: dict[tuple[str, int, int], str] = {}
_hash_lock = threading.Lock()


class WeightsError(ValueError):
    """A weights file that must not be loaded: its bytes differ from the manifest's sha256."""


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_manifest(weights_dir: str | Path = WEIGHTS_DIR) -> dict:
    """``weights_dir/manifest.json`` as a dict (``{"models": {}}`` when it does not exist yet).

    Raises:
        ValueError: if the file exists but is not valid JSON (names the file).
    """
    path = Path(weights_dir) / MANIFEST
    if not path.is_file():
        return {"models": {}}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); restore it from git or rebuild it with "
                         "`python -m deblur.train --ship`") from exc


def offered_models(weights_dir: str | Path = WEIGHTS_DIR, degradation: str | None = None,
                   include_unoffered: bool = False) -> dict[str, dict]:
    """Manifest entries by name, of one degradation (or all), without the ones marked ``offer: false``."""
    return {name: entry for name, entry in load_manifest(weights_dir).get("models", {}).items()
            if (degradation is None or entry.get("degradation") == degradation)
            and (include_unoffered or entry.get("offer", True))}


def manifest_entry(path: str | Path) -> dict | None:
    """The manifest entry of a weights file: the one in ``manifest.json`` next to it whose ``file`` is its name."""
    path = Path(path)
    for entry in load_manifest(path.parent).get("models", {}).values():
        if entry.get("file") == path.name:
            return entry
    return None


def _cached_sha256(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _hash_lock:
        if key not in _hashes:
            _hashes[key] = sha256_file(path)
        return _hashes[key]


def verify_weights(path: str | Path) -> bool:
    """Check a weights file against the sha256 of the ``manifest.json`` next to it.

    Returns:
        ``True`` if the manifest lists the file and the hash matches; ``False`` if no manifest lists it (a
        checkpoint of your own, e.g. fresh from ``python -m deblur.train``, which has nothing to check against).

    Raises:
        FileNotFoundError: the file is missing.
        WeightsError: the file differs from the manifest (a flipped byte, a truncated download, a replaced
            file); the message names the file and how to fix it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} not found; {RETRAIN_HINT}")
    entry = manifest_entry(path)
    if entry is None:
        return False
    if not entry.get("sha256"):
        raise WeightsError(f"{path.parent / MANIFEST} lists {path.name} without a sha256, so it cannot be checked; "
                           "rebuild the manifest with `python -m deblur.train --ship`")
    if _cached_sha256(path) != entry["sha256"]:
        raise WeightsError(f"weights file {path} does not match the sha256 in {path.parent / MANIFEST}: it was "
                           f"changed or damaged, so it is refused. Restore the original (`git checkout -- {path}`) "
                           f"or {RETRAIN_HINT} and rebuild the manifest with "
                           "`python -m deblur.train --ship`")
    return True
