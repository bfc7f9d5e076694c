"""The reference study's convolutional autoencoder for Gaussian blur (its Figure B model).

The study reports "two convolutions with 32 kernels each in the encoder, and the same but with upsampling
layers for the decoder" and 29,507 trainable parameters. That count is exactly

    conv 3->32 3x3 (896) + three conv 32->32 3x3 (3 x 9,248) + conv 32->3 3x3 (867) = 29,507,

so the encoder is two 32-kernel convolutions, each followed by 2x2 max-pooling, and the decoder is two
32-kernel convolutions, each followed by 2x nearest upsampling, then a 3-channel output convolution with a
sigmoid. The study trained it on one blur strength of CelebA faces and called the results "somewhat
sharper"; it has a receptive field of only ~30 px and no skip connections, so expect it to smooth detail.
"""

from __future__ import annotations

import torch
from torch import nn


class SeedAE(nn.Module):
    """The study's 29,507-parameter autoencoder.

    Args:
        width: kernels per hidden convolution (32 in the study; other values change the count).

    Input ``N x 3 x H x W`` in ``[0, 1]`` with ``H, W`` multiples of :attr:`stride`; output the same shape.
    """

    stride = 4  # two 2x poolings
    uses_classical = False
    uses_strength = False

    def __init__(self, width: int = 32):
        super().__init__()
        self.in_channels = 3
        act = nn.ReLU(inplace=True)
        self.encoder = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), act, nn.MaxPool2d(2),
            nn.Conv2d(width, width, 3, padding=1), act, nn.MaxPool2d(2),
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1), act, nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(width, width, 3, padding=1), act, nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(width, 3, 3, padding=1), nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))
