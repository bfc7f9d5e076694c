"""The reference study's six pixelation autoencoders (its Figure C sweep) as one parameterised class.

The study compared six autoencoders with two convolutional layers in the encoder and two in the decoder,
labelled by the kernel sizes of the two layers, each with roughly twice the parameters of the one before.
It found that validation MSE "only improves by a tiny margin" while training time nearly doubles. The
report gives neither the widths nor the exact kernel sizes, so we fix the layout of the study's Gaussian
autoencoder (32 kernels per layer, 2x2 max-pooling / 2x nearest upsampling, a 3x3 output conv) and vary
the two kernel sizes ``(k1, k2)`` (the decoder mirrors them) so that parameters roughly double:

=====  ========  ==========  ================
name   (k1, k2)  parameters  ratio to previous
=====  ========  ==========  ================
a      (3, 3)       29,507    (= seed_ae)
b      (3, 5)       62,275    2.11
c      (5, 7)      129,347    2.08
d      (9, 9)      257,603    1.99
e      (13, 13)    536,387    2.08
f      (17, 19)  1,064,003    1.98
=====  ========  ==========  ================
"""

from __future__ import annotations

import torch
from torch import nn

PIX_AE_CONFIGS: dict[str, tuple[int, int]] = {
    "a": (3, 3), "b": (3, 5), "c": (5, 7), "d": (9, 9), "e": (13, 13), "f": (17, 19),
}


class PixAE(nn.Module):
    """Two-conv encoder / two-conv decoder autoencoder with configurable kernel sizes.

    Args:
        k1: kernel size of the outer layers (first encoder conv, last decoder conv); odd.
        k2: kernel size of the inner layers (second encoder conv, first decoder conv); odd.
        width: kernels per hidden convolution.

    Input ``N x 3 x H x W`` in ``[0, 1]``, ``H, W`` multiples of :attr:`stride`; output the same shape.
    """

    stride = 4
    uses_classical = False
    uses_strength = False

    def __init__(self, k1: int = 3, k2: int = 3, width: int = 32):
        super().__init__()
        for k in (k1, k2):
            if k < 1 or k % 2 == 0:
                raise ValueError(f"kernel sizes must be odd and positive (same padding), got {(k1, k2)}")
        self.in_channels = 3
        act = nn.ReLU(inplace=True)
        up = nn.Upsample(scale_factor=2, mode="nearest")
        self.encoder = nn.Sequential(
            nn.Conv2d(3, width, k1, padding=k1 // 2), act, nn.MaxPool2d(2),
            nn.Conv2d(width, width, k2, padding=k2 // 2), act, nn.MaxPool2d(2),
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(width, width, k2, padding=k2 // 2), act, up,
            nn.Conv2d(width, width, k1, padding=k1 // 2), act, up,
            nn.Conv2d(width, 3, 3, padding=1), nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))
