"""Small things every tab shares: the example photos, the degradations' labels, where the app runs."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DEGRADATION_LABELS", "EXAMPLES_DIR", "ON_SPACES", "example_photos", "gpu"]

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


def example_photos() -> list[Path]:
    """The bundled example photos (see examples/SOURCES.md)."""
    return sorted(EXAMPLES_DIR.glob("*.png"))
