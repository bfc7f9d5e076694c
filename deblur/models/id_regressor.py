"""The *learned* attacker: a small CNN that maps an obscured face straight to its clean identity embedding.

It does not restore the face at all. Hao et al. (2020, arXiv 1905.05243) showed that a recogniser trained on
blurred faces keeps ~82 % identification where one trained on clear faces drops to 1–3 % (Gaussian kernel
25); McPherson, Shokri & Shmatikov (2016, arXiv 1609.00408) re-identified 71 % of pixelated FaceScrub faces
top-1 with a network trained on pixelated faces. This model is the small, CPU-trainable version of that
attacker: it regresses the dlib embedding (128-d) of the clean face from the obscured one, so its output is
matched against a gallery of *clean* photos with the same embedder.

Input: ``N x (3 + len(KINDS) + 1) x 64 x 64``: the obscured 128-px crop area-downsampled to 64 px, a one-hot
map of the obscuring kind and the strength divided by that kind's largest trained strength (the attacker is
told how the face was obscured, as the restore-then-match attacker is). Output: ``N x 128``.
"""

from __future__ import annotations

import torch
from torch import nn

# Obscuring kinds the attacker is conditioned on, in channel order.
KINDS = ("gaussian", "pixelate", "motion", "pixelate_noise")


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.BatchNorm2d(c_out), nn.SiLU(inplace=True),
                         nn.Conv2d(c_out, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.SiLU(inplace=True))


class IdRegressor(nn.Module):
    """Obscured face (64 px) + kind/strength maps → 128-d identity embedding (~0.4M parameters at width 32).

    Args:
        width: channels of the first stage (doubling at each of four stride-2 stages).
        dim: embedding length (128 for dlib).
    """

    size = 64
    kinds = KINDS

    def __init__(self, width: int = 32, dim: int = 128):
        super().__init__()
        self.in_channels = 3 + len(KINDS) + 1
        self.dim = dim
        w = width
        self.features = nn.Sequential(_block(self.in_channels, w), _block(w, 2 * w), _block(2 * w, 4 * w),
                                      _block(4 * w, 4 * w), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Sequential(nn.Linear(4 * w, 256), nn.SiLU(inplace=True), nn.Linear(256, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def condition(images: torch.Tensor, kinds: list[str], strengths: torch.Tensor, highs: dict[str, float]) -> torch.Tensor:
    """Stack the kind one-hot and normalised strength maps onto ``N x 3 x 64 x 64`` images.

    Raises:
        ValueError: for a kind outside :data:`KINDS`.
    """
    n, _, h, w = images.shape
    onehot = torch.zeros(n, len(KINDS), h, w, dtype=images.dtype, device=images.device)
    scale = torch.empty(n, dtype=images.dtype, device=images.device)
    for i, k in enumerate(kinds):
        if k not in KINDS:
            raise ValueError(f"the learned attacker was not trained on {k!r}; it knows {list(KINDS)}")
        onehot[i, KINDS.index(k)] = 1.0
        scale[i] = float(strengths[i]) / float(highs[k])
    return torch.cat([images, onehot, scale.view(n, 1, 1, 1).expand(n, 1, h, w)], dim=1)
