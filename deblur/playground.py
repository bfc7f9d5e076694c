"""Playground handlers: plain typed functions the Gradio app wires up and tests call directly."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import numpy as np

from deblur import degrade as D
from deblur.io import ImageError, load_image

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
DEGRADATION_LABELS = {"gaussian": "Gaussian blur", "pixelate": "Pixelation", "motion": "Motion blur"}


def example_photos() -> list[Path]:
    """The bundled example photos (see examples/SOURCES.md)."""
    return sorted(EXAMPLES_DIR.glob("*.png"))


def read_upload(path: str | None) -> np.ndarray:
    """Load an uploaded file, turning every bad-input case into a ``gr.Error`` the user can act on."""
    if not path:
        raise gr.Error("Upload a photo, take one with the webcam, or pick an example first.")
    try:
        return load_image(path)
    except (ImageError, FileNotFoundError) as exc:
        raise gr.Error(str(exc)) from exc


def degrade_upload(path: str | None, kind: str, strength: float) -> np.ndarray:
    """Degrade an uploaded photo; returns the degraded image (float32 HxWx3)."""
    img = read_upload(path)
    try:
        return D.quantize(D.degrade(img, kind, strength))
    except ValueError as exc:
        raise gr.Error(str(exc)) from exc
