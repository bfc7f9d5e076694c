"""The *learned* attacker: a small CNN that maps an obscured face straight to its clean identity embedding.

It does not restore the face at all. Hao et al. (2020, arXiv 1905.05243) showed that a recogniser trained on
blurred faces keeps ~82 % identification where one trained on clear faces drops to 1–3 % (Gaussian kernel
25); McPherson, Shokri & Shmatikov (2016, arXiv 1609.00408) re-identified 71 % of pixelated FaceScrub faces
top-1 with a network trained on pixelated faces. This model is the small, CPU-trainable version of that
attacker: it regresses the dlib embedding (128-d) of the clean face from the obscured one, so its output is
matched against a gallery of *clean* photos with the same embedder.

Input: ``N x (3 + len(KINDS) + 1) x size x size`` (``size`` 16 by default): the obscured 128-px crop
area-downsampled (an obscured face keeps little above that resolution, and it keeps CPU training cheap), a one-hot
map of the obscuring kind and the strength divided by that kind's largest trained strength (the attacker is
told how the face was obscured, as the restore-then-match attacker is). Output: ``N x 128``.
"""

from __future__ import annotations

import torch
from torch import nn

# Obscuring kinds the attacker is conditioned on, in channel order.
KINDS = ("gaussian", "pixelate", "motion", "pixelate_noise")


class IdRegressor(nn.Module):
    """Obscured face thumbnail (``size`` px) + kind/strength → 128-d identity embedding: a small MLP.

    An obscured face keeps little detail above a 16-px thumbnail (8-px blocks on a 128-px crop are exactly
    16 px), and an MLP on it trains in minutes on a shared CPU where a CNN on 64 px would not.

    Args:
        size: thumbnail side in pixels.
        hidden: width of the two hidden layers.
        dim: embedding length (128 for dlib).
        dropout: dropout after each hidden layer (1,200 training identities are few).
    """

    kinds = KINDS

    def __init__(self, size: int = 16, hidden: int = 512, dim: int = 128, dropout: float = 0.1):
        super().__init__()
        self.size = size
        self.dim = dim
        self.in_channels = 3 + len(KINDS) + 1
        n_in = 3 * size * size + len(KINDS) + 1
        self.net = nn.Sequential(nn.Linear(n_in, hidden), nn.SiLU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, hidden), nn.SiLU(), nn.Dropout(dropout), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``N x in_channels x size x size`` from :func:`condition` (the maps are constant per image)."""
        pixels = x[:, :3].flatten(1)
        cond = x[:, 3:, 0, 0]
        return self.net(torch.cat([pixels * 2 - 1, cond], dim=1))


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
