"""Restoration networks, one per file, and the explicit table of them.

Every model maps ``N x in_channels x H x W`` to ``N x 3 x H x W`` and exposes ``stride`` (``H`` and ``W``
must be multiples of it; :class:`deblur.restore.LearnedRestorer` pads and crops), ``in_channels``,
``uses_classical`` and ``uses_strength`` (which extra input channels the restorer must supply).
"""

from __future__ import annotations

from torch import nn

from deblur.models.motion_gan import MotionGANGenerator, PatchDiscriminator
from deblur.models.pix_ae import PIX_AE_CONFIGS, PixAE
from deblur.models.resunet import ResUNet
from deblur.models.seed_ae import SeedAE

__all__ = ["MODELS", "PIX_AE_CONFIGS", "MotionGANGenerator", "PatchDiscriminator", "PixAE", "ResUNet", "SeedAE",
           "build_model", "count_params"]

MODELS: dict[str, type[nn.Module]] = {
    "seed_ae": SeedAE,
    "pix_ae": PixAE,
    "motion_gan": MotionGANGenerator,
    "resunet": ResUNet,
}


def build_model(name: str, **kwargs) -> nn.Module:
    """Instantiate model ``name`` from :data:`MODELS` with keyword arguments ``kwargs``.

    Raises:
        ValueError: if ``name`` is not in :data:`MODELS` (the message lists the known names).
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}")
    return MODELS[name](**kwargs)


def count_params(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
