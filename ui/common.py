"""Small things every tab shares: the example photos, the degradations' labels, where the app runs."""

from __future__ import annotations

import os
from pathlib import Path

from deblur.restore.external.spec import app_specs

__all__ = ["DEGRADATION_LABELS", "EXAMPLES_DIR", "EXTERNAL_HELP", "ON_SPACES", "example_photos", "external_specs",
           "gpu"]

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
DEGRADATION_LABELS = {"gaussian": "Gaussian blur", "pixelate": "Pixelation", "motion": "Motion blur"}
ON_SPACES = bool(os.environ.get("SPACE_ID"))

try:  # ZeroGPU on Hugging Face Spaces: the decorator borrows a GPU per call; a no-op everywhere else
    import spaces

    gpu = spaces.GPU
except ImportError:  # pragma: no cover - depends on the host

    def gpu(fn):
        """No-op stand-in for ``spaces.GPU`` when the ``spaces`` package is absent."""
        return fn


EXTERNAL_HELP = ("A running Gradio app or a Hugging Face Space, with its endpoint after '#': "
                 "http://127.0.0.1:7860/#/predict or owner/space#/predict (one per line, optionally NAME=...; "
                 "options after '?', e.g. ?nonblind,timeout=60 — see docs/EXTERNAL.md). Python callables: CLI only.")


def external_specs(text: str | None) -> list[str]:
    """The external restorer specs typed into a tab (Gradio apps and Spaces only; refused on a public Space).

    Raises:
        ValueError: on a Space, for a spec that does not parse, or for a Python callable.
    """
    if not (text or "").strip():
        return []
    if ON_SPACES:
        raise ValueError("External restorers can only be audited when you run the app locally (python app.py).")
    return app_specs(text)


def example_photos() -> list[Path]:
    """The bundled example photos (see examples/SOURCES.md)."""
    return sorted(EXAMPLES_DIR.glob("*.png"))
