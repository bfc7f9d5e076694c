"""Settings of one audit run and the columns of its ``per_image.csv``.

Kept apart from :mod:`audit.engine` so that the report, the CLI and the app can read a run's settings without
importing the engine (and the engine can import the report without a cycle).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from audit.groups import PREDICTED_ATTRIBUTES
from deblur.degrade import DEGRADATIONS, degrade
from deblur.restore.external import parse_external
from deblur.restore.external.spec import DEFAULT_CONCURRENCY
from deblur.strengths import AUDIT_GRID

__all__ = ["ROW_FIELDS", "AuditConfig"]

# Columns of per_image.csv, in order; group columns are appended per run.
ROW_FIELDS = (
    "image_id", "model", "model_family", "uses_strength", "degradation", "strength", "embedder", "status",
    "dist_restored_clean", "dist_degraded_clean", "dist_restored_degraded", "drift",
    "sim_restored_clean", "sim_degraded_clean", "threshold", "match_restored", "match_degraded",
    "rank1_restored", "rank1_degraded", "face_detected_restored", "psnr_restored", "ssim_restored",
    "psnr_degraded", "ssim_degraded", "ita_clean", "ita_restored", "delta_ita", "lightness_clean",
    "delta_lightness", "seconds", "note",
)


@dataclass
class AuditConfig:
    """Everything one audit run needs; the CLI and the app build one of these.

    Attributes:
        data: ``"builtin"`` (generated faces, test split) or a data folder.
        labels: labels CSV (``folder`` format: ``path`` + group columns).
        format: ``folder``, ``celeba``, ``fairface`` or ``utkface`` (detected when ``None``).
        models: restorer names; ``None`` = every restorer available for each degradation.
        degradations: kind → strengths in pixels of the 128-px crop.
        embedder: embedder name (see :data:`deblur.embed.EMBEDDERS`).
        out: output folder.
        n: at most this many images (first ``n`` in data order).
        n_boot: bootstrap resamples.
        seed: seed for bootstrap, permutation tests and calibration sampling.
        min_group_n: groups smaller than this are flagged.
        fmr: false-match rate at which the match threshold is calibrated.
        predict: predicted attributes to add (empty: labels only).
        crop: ``auto`` (built-in set: ``whole``; photos: ``detect``), ``whole`` or ``detect`` (see
            :func:`audit.engine.to_crop`).
        reference: attribute → reference group (default: the largest group).
        contact_sheets: write contact sheets of the predicted skin-tone bins.
        plotlyjs: ``"inline"`` (figures.html works offline) or ``"cdn"`` (small file, needs internet to view).
        external: external restorer specs ``NAME=SPEC`` (:mod:`deblur.restore.external`), audited next to ours.
        external_concurrency: calls in flight per external restorer (a spec's ``concurrency=`` overrides it).
        identity: labels column saying who each photo shows (several photos per person): impostor pairs are
            then only pairs of different people, same-person pairs give the FNMR, rank-1 counts any photo of
            the person. Never a group column.
    """

    data: str = "builtin"
    labels: str | None = None
    format: str | None = None
    models: Sequence[str] | None = None
    degradations: Mapping[str, Sequence[float]] = field(default_factory=lambda: dict(AUDIT_GRID))
    embedder: str = "dlib"
    out: str = "results/audit"
    n: int = 200
    n_boot: int = 1000
    seed: int = 0
    min_group_n: int = 30
    fmr: float = 0.01
    predict: Sequence[str] = PREDICTED_ATTRIBUTES
    crop: str = "auto"
    reference: Mapping[str, str] = field(default_factory=dict)
    contact_sheets: bool = True
    plotlyjs: str = "inline"
    external: Sequence[str] = ()
    external_concurrency: int = DEFAULT_CONCURRENCY
    identity: str | None = None

    def validate(self) -> None:
        """Raise ``ValueError`` with a helpful message for a bad setting."""
        for kind, strengths in self.degradations.items():
            if kind not in DEGRADATIONS:
                raise ValueError(f"unknown degradation {kind!r}; choose from {sorted(DEGRADATIONS)}")
            for s in strengths:
                degrade(np.zeros((8, 8, 3), np.float32), kind, s)  # raises with the valid range
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if self.identity and self.data == "builtin":
            raise ValueError("--identity needs labelled data (--data FOLDER --labels CSV with that column); "
                             "the built-in faces are one photo per (generated) person")
        if self.n_boot < 1:
            raise ValueError(f"n_boot must be >= 1, got {self.n_boot}")
        if not 0 < self.fmr < 1:
            raise ValueError(f"fmr must be in (0, 1), got {self.fmr}")
        if self.external_concurrency < 1:
            raise ValueError(f"external_concurrency must be >= 1, got {self.external_concurrency}")
        for spec in self.external:
            parse_external(spec)  # raises with the syntax
