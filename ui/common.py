"""What every tab shares, once: reading an upload, cutting its face, and showing a library error to the user.

Libraries raise plain exceptions with a message written for the user (``ValueError`` and its subclasses such as
:class:`deblur.io.ImageError`, :class:`deblur.faces.NoFaceError`, :class:`deblur.restore.WeightsError`;
``FileNotFoundError``; :class:`deblur.embed.EmbedderUnavailable`). :func:`user_errors` turns them into
``gr.Error`` so the page shows the message instead of a generic "Error".
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import gradio as gr
import numpy as np
from PIL import Image, UnidentifiedImageError

from deblur import playground
from deblur.embed import EmbedderUnavailable
from deblur.io import load_image

__all__ = ["DEGRADATION_LABELS", "EXAMPLES_DIR", "ON_SPACES", "USER_ERRORS", "example_photos", "gpu",
           "photo_input", "prepared_upload", "read_upload", "user_errors"]

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
DEGRADATION_LABELS = {"gaussian": "Gaussian blur", "pixelate": "Pixelation", "motion": "Motion blur"}
ON_SPACES = bool(os.environ.get("SPACE_ID"))
USER_ERRORS = (ValueError, FileNotFoundError, EmbedderUnavailable)

try:  # ZeroGPU on Hugging Face Spaces: the decorator borrows a GPU per call; a no-op everywhere else
    import spaces

    gpu = spaces.GPU
except ImportError:  # pragma: no cover - depends on the host

    def gpu(fn):
        """No-op stand-in for ``spaces.GPU`` when the ``spaces`` package is absent."""
        return fn


@contextmanager
def user_errors(prefix: str = "") -> Iterator[None]:
    """Re-raise the libraries' user-facing errors (:data:`USER_ERRORS`) as ``gr.Error`` with their message."""
    try:
        yield
    except gr.Error:
        raise
    except USER_ERRORS as exc:
        raise gr.Error(f"{prefix}{exc}") from exc


def example_photos() -> list[Path]:
    """The bundled example photos (see examples/SOURCES.md)."""
    return sorted(EXAMPLES_DIR.glob("*.png"))


def read_upload(path: str | None) -> np.ndarray:
    """Load an uploaded file (:func:`deblur.io.load_image`), every bad-input case a ``gr.Error`` the user can act on."""
    if not path:
        raise gr.Error("Upload a photo, take one with the webcam, or pick an example first.")
    with user_errors():
        return load_image(path)


def prepared_upload(path: str | None, mode: str = "face") -> playground.Prepared:
    """Read an upload and cut its face crop (``mode="face"``) or shrink it whole (:func:`deblur.playground.prepare`).

    Raises:
        gr.Error: no upload, an unreadable file, no face in face-crop mode, or an unknown mode.
    """
    img = read_upload(path)
    with user_errors():
        return playground.prepare(img, mode)


def photo_input(**kwargs) -> gr.Image:
    """A ``gr.Image`` upload whose unreadable files reach the user as a clear ``gr.Error``.

    Gradio opens the upload's header before our handler runs; a text file renamed ``.png`` would otherwise
    fail there with a generic "Error". Pixel limits and decoding happen later, in :mod:`deblur.io`. The
    instance's ``preprocess`` is wrapped rather than subclassing ``gr.Image``: Gradio writes a ``.pyi`` stub
    next to the module of every component subclass, and the app must not write into its own folder.
    """
    image = gr.Image(type="filepath", image_mode=None, **kwargs)
    preprocess = image.preprocess

    def guarded(payload):
        try:
            return preprocess(payload)
        except gr.Error:
            raise
        except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
            name = getattr(payload, "orig_name", None) or "the upload"
            raise gr.Error(f"'{name}' is not an image we can read (PNG, JPEG, WebP, BMP, TIFF), or it is too "
                           f"large ({type(exc).__name__}). Upload a regular photo.") from exc

    image.preprocess = guarded
    return image
