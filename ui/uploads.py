"""What the app keeps on the server, where, and for how long (the README and the About tab quote this).

- **Uploads** (photo, zip, labels CSV) arrive in Gradio's cache folder (``GRADIO_TEMP_DIR``, by default
  ``<system temp>/gradio``). The request that uses one reads its bytes into memory and deletes the file
  (and its folder) *before any work starts* (:func:`consume`), so no copy is on disk once it has answered.
  A failed request has deleted it too.
- **A photo's bytes** stay in server memory, never on disk, for re-runs in the same browser tab
  (:func:`kept_photo`, a ``gr.State``): dropped when the tab closes or reloads, at most
  :data:`MEMORY_TTL_S` after the last run. API clients send the photo with every call. An upload's bytes
  also stay in memory :data:`SHARED_UPLOAD_S` after it was read, for an identical upload that arrived at the
  same moment (Gradio stores both as one file).
- **Outputs** (crops, reconstructions, obscured faces, report CSVs) are written straight into Gradio's cache
  so the browser can show and download them, and Gradio deletes them :data:`OUTPUT_LIFETIME_S` after they
  were written (checked every :data:`SWEEP_S`), and all of them when the server stops. Nothing is written
  to the system temp folder outside Gradio's cache folder, except zips extracted for the audit's run, which
  are deleted when the run ends.
- The bundled example photos are public: their copies in Gradio's cache stay while the server runs.
- ``max_file_size`` (:data:`MAX_FILE_MB`) caps every upload.
"""

from __future__ import annotations

import functools
import hashlib
import os
import threading
import time
from pathlib import Path

import gradio as gr
import numpy as np
from gradio import processing_utils
from gradio import utils as gr_utils
from PIL import Image, UnidentifiedImageError

from deblur.io import ImageError, decode_image
from ui.common import example_photos

__all__ = ["BLOCKS_OPTIONS", "LAUNCH_OPTIONS", "MAX_FILE_MB", "MEMORY_TTL_S", "OUTPUT_LIFETIME_S", "PRIVACY",
           "SWEEP_S", "cache_dir", "consume", "kept_photo", "photo_input", "publish", "publish_bytes", "read_photo",
           "take_photo"]

# Outputs live this long so the browser (or an API client) can fetch them; FACEDRIFT_OUTPUT_LIFETIME (seconds)
# shortens it, e.g. in tests.
OUTPUT_LIFETIME_S = int(os.environ.get("FACEDRIFT_OUTPUT_LIFETIME", "600"))
SWEEP_S = max(1, min(60, OUTPUT_LIFETIME_S // 4))
MEMORY_TTL_S = 900
# Gradio stores an upload at <cache>/<hash of its bytes>/<name>: the same file uploaded twice at the same moment
# (two tabs, two users) is ONE file, which the first request deletes. The bytes of a consumed upload stay in
# memory this long so that the second request gets them too.
SHARED_UPLOAD_S = 120
MAX_FILE_MB = 50
BLOCKS_OPTIONS = {"delete_cache": (SWEEP_S, OUTPUT_LIFETIME_S)}
LAUNCH_OPTIONS = {"max_file_size": f"{MAX_FILE_MB}mb"}

PRIVACY = f"""\
- **Uploads** (photos, zips, labels CSVs) are read into memory and deleted from the server's disk before any work
  starts, also when the request then fails. An upload that never reaches a request (say, the tab was closed
  first) is deleted like the results below. Uploads are limited to {MAX_FILE_MB} MB.
- **Your photo's bytes** stay in server memory, never on disk, so that you can run again with other settings in
  the same browser tab: until the tab closes or reloads, at most {MEMORY_TTL_S // 60} minutes after your last run.
  API clients send the photo with every call. Every upload's bytes also stay in memory {SHARED_UPLOAD_S} s after
  it was read, because the same file uploaded twice at the same moment is stored once.
- **Results** (face crops, reconstructions, obscured faces, audit reports including `faces.csv` with predicted
  attributes) are written to the app's temporary folder so that your browser can show and download them, and
  deleted {OUTPUT_LIFETIME_S // 60} minutes after they were made (checked every {SWEEP_S} s), all of them when
  the server stops. Download what you want to keep.
- The audit extracts an uploaded zip into a temporary folder that is deleted when the run ends.
- Nothing is logged; Gradio analytics are off. Downloads are PNGs without metadata.
"""

GONE = ("This upload is no longer on the server: uploads are deleted as soon as a request has read them. "
        "Upload the file again.")


def cache_dir() -> Path:
    """Gradio's cache folder for this process (``GRADIO_TEMP_DIR`` or ``<temp>/gradio``)."""
    return Path(gr_utils.get_upload_folder()).resolve()


@functools.lru_cache(maxsize=1)
def _public_hashes() -> frozenset[str]:
    return frozenset(hashlib.sha256(p.read_bytes()).hexdigest() for p in example_photos())


_CONSUMED: dict[Path, tuple[float, bytes]] = {}  # upload path -> (when read, bytes), for SHARED_UPLOAD_S
_CONSUMED_LOCK = threading.Lock()


def _recently_consumed(path: Path) -> bytes | None:
    """The bytes of an upload another request read (and deleted) less than :data:`SHARED_UPLOAD_S` ago."""
    now = time.monotonic()
    with _CONSUMED_LOCK:
        for old in [p for p, (t, _) in _CONSUMED.items() if now - t > SHARED_UPLOAD_S]:
            del _CONSUMED[old]
        hit = _CONSUMED.get(path)
    return hit[1] if hit else None


def consume(path: str | os.PathLike) -> bytes:
    """The bytes of an upload; the file (and its folder) are deleted from Gradio's cache once read.

    Files outside Gradio's cache (a local path given to the handler directly) and byte-for-byte copies of the
    bundled example photos (public; the Examples widget serves the same cached file) are only read. Identical
    uploads share one file in Gradio's cache: a request that finds it already consumed by another less than
    :data:`SHARED_UPLOAD_S` ago gets the bytes from memory.

    Raises:
        gr.Error: the file is not there (consumed by an earlier request more than :data:`SHARED_UPLOAD_S` ago).
    """
    file = Path(path)
    try:
        data = file.read_bytes()
    except FileNotFoundError as exc:
        shared = _recently_consumed(file.resolve())
        if shared is None:
            raise gr.Error(GONE) from exc
        return shared
    resolved = file.resolve()
    root = cache_dir()
    if resolved.is_relative_to(root) and hashlib.sha256(data).hexdigest() not in _public_hashes():
        with _CONSUMED_LOCK:
            _CONSUMED[resolved] = (time.monotonic(), data)
        _recently_consumed(resolved)  # and forget the expired ones
        resolved.unlink(missing_ok=True)
        if resolved.parent != root:
            try:
                resolved.parent.rmdir()  # Gradio names it after a hash of the bytes; leave no trace
            except OSError:
                pass  # not empty: another upload with other bytes shares it
    return data


def kept_photo() -> gr.State:
    """Per-tab memory of the last photo's bytes, so a re-run does not need the (deleted) upload file."""
    return gr.State(None, time_to_live=MEMORY_TTL_S)


def take_photo(path: str | None, kept: dict | None) -> tuple[np.ndarray, dict]:
    """Read an uploaded photo once, delete the upload, decode it; a re-run of the same upload uses memory.

    Args:
        path: the upload's path as Gradio hands it to the handler.
        kept: the tab's :func:`kept_photo` value.

    Returns:
        The image (``HxWx3`` float32) and the new ``kept`` value.

    Raises:
        gr.Error: no upload, upload gone, or not a readable image.
    """
    if not path:
        raise gr.Error("Upload a photo, take one with the webcam, or pick an example first.")
    if kept and kept.get("path") == path and not Path(path).is_file():
        data = kept["data"]
    else:
        data = consume(path)
        kept = {"path": path, "data": data}
    try:
        return decode_image(data, f"'{Path(path).name}'"), kept
    except ImageError as exc:
        raise gr.Error(f"{str(exc).rstrip('.')}. Upload a regular photo (PNG, JPEG, WebP, BMP, TIFF).") from exc


def read_photo(photo: str | os.PathLike | np.ndarray | None) -> np.ndarray:
    """A photo for a handler that is called with an image already read, or with a file (tests, benchmarks).

    A file in Gradio's cache is deleted once read, exactly as :func:`take_photo` does.

    Raises:
        gr.Error: no photo, a file that is gone, or not a readable image.
    """
    if isinstance(photo, np.ndarray):
        return photo
    return take_photo(None if photo is None else str(photo), None)[0]


def publish(path: str | os.PathLike) -> str:
    """Copy an output file into Gradio's cache (served, then deleted after :data:`OUTPUT_LIFETIME_S`)."""
    return processing_utils.save_file_to_cache(path, cache_dir=str(cache_dir()))


def publish_bytes(data: bytes, name: str) -> str:
    """Write output bytes into Gradio's cache under ``name`` (served, then deleted like :func:`publish`)."""
    return processing_utils.save_bytes_to_cache(data, name, cache_dir=str(cache_dir()))


def photo_input(**kwargs) -> gr.Image:
    """A ``gr.Image`` upload handed to the handler as a path; unreadable files become a clear ``gr.Error``.

    Gradio opens the upload's header before our handler runs; a text file renamed ``.png`` would otherwise
    fail there with a generic "Error". A path that is no longer there (consumed by an earlier run in this tab)
    is passed on as is: :func:`take_photo` finds its bytes in the tab's memory. The instance's ``preprocess`` is
    wrapped rather than subclassing ``gr.Image``: Gradio writes a ``.pyi`` stub next to the module of every
    component subclass, and the app must not write into its own folder.
    """
    image = gr.Image(type="filepath", image_mode=None, **kwargs)
    preprocess = image.preprocess

    def guarded(payload):
        if payload is not None and getattr(payload, "path", None) and not Path(payload.path).exists():
            return payload.path
        try:
            return preprocess(payload)
        except gr.Error:
            raise
        except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
            name = getattr(payload, "orig_name", None) or "the upload"
            consume(payload.path)  # the handler will not run: delete the unusable upload now
            raise gr.Error(f"'{name}' is not an image we can read (PNG, JPEG, WebP, BMP, TIFF), or it is too "
                           f"large ({type(exc).__name__}). Upload a regular photo.") from exc

    image.preprocess = guarded
    return image
