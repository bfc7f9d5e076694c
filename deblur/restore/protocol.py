"""The one interface every restorer implements: learned, classical, ``none`` and external ones.

The app, the audit, the safety sweep and the evaluation table only use these attributes and methods, so
anything that has them can be audited. ``isinstance(obj, Restorer)`` checks the attributes and methods
exist (``runtime_checkable``), not their signatures.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["FAMILIES", "Restorer"]

FAMILIES = ("learned", "classical", "none", "external")


@runtime_checkable
class Restorer(Protocol):
    """A face restorer.

    Attributes:
        name: unique key, e.g. ``"resunet-gaussian"``, ``"wiener"``, ``"bicubic"``, ``"none"``.
        label: human label for the UI and reports.
        family: ``"learned"``, ``"classical"``, ``"none"`` or ``"external"`` (:data:`FAMILIES`).
        degradations: the degradations it restores.
        uses_strength: ``True`` when it is non-blind, i.e. told the strength (kernel, block size).
    """

    name: str
    label: str
    family: str
    degradations: tuple[str, ...]
    uses_strength: bool

    def restore(self, img: np.ndarray, strength: float | None = None) -> np.ndarray:
        """Restore one ``HxWx3`` float32 image in ``[0, 1]``; the output has the input's shape."""
        ...

    def restore_batch(self, imgs: np.ndarray, strengths: Sequence[float] | None = None) -> np.ndarray:
        """Restore ``N x H x W x 3`` images of one size, one strength per image when :attr:`uses_strength`."""
        ...

    # Optional: ``restore_outcomes(imgs, strengths) -> list[RestoreOutcome]`` restores each image and reports a
    # failed one as a status instead of raising (external restorers run them concurrently);
    # :func:`deblur.restore.restore_outcomes` calls it when present and wraps :meth:`restore` otherwise.
