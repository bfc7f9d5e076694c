"""Our stronger restorer: a small residual U-Net with PixelShuffle upsampling (~0.5M parameters).

Not in the reference study. It follows what TRAINING.md measured to work on this data: start from the
non-blind classical estimate (Wiener / Richardson–Lucy for blur, bicubic of the block grid for
pixelation) and learn a residual correction on top, told the strength as a constant input channel.
Because the output is ``classical + correction``, a zero correction reproduces the classical baseline, so
the model starts from it and should never end up much worse. One model covers a whole strength range.

Input channels, in order: degraded image (3), classical estimate (3, if ``use_classical``), strength map
(1, if ``use_strength``; the strength divided by ``STRENGTHS[kind].high``). Without the classical channels
the residual is added to the degraded input instead.
"""

from __future__ import annotations

import torch
from torch import nn


class _ResBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.SiLU(inplace=True), nn.Conv2d(c, c, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class _Up(nn.Module):
    """PixelShuffle 2x upsampling (conv to 4x channels, then shuffle) followed by a skip merge."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.up = nn.Sequential(nn.Conv2d(c_in, 4 * c_out, 3, padding=1), nn.PixelShuffle(2))
        self.merge = nn.Conv2d(2 * c_out, c_out, 1)
        self.block = _ResBlock(c_out)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.block(self.merge(torch.cat([self.up(x), skip], dim=1)))


class ResUNet(nn.Module):
    """Three-level residual U-Net (total stride 8) predicting a correction to a base image.

    Args:
        widths: channels at full, 1/2, 1/4 and 1/8 resolution.
        use_classical: take the classical estimate as input channels 3-5 and add the output to it.
        use_strength: take a constant strength channel as the last input channel.

    Input ``N x in_channels x H x W`` (``H, W`` multiples of :attr:`stride`); output ``N x 3 x H x W``.
    """

    stride = 8

    def __init__(self, widths: tuple[int, int, int, int] = (24, 32, 48, 64), use_classical: bool = True,
                 use_strength: bool = True):
        super().__init__()
        self.uses_classical = use_classical
        self.uses_strength = use_strength
        self.in_channels = 3 + 3 * use_classical + use_strength
        if len(widths) != 4:
            raise ValueError(f"widths must give 4 channel counts (full, 1/2, 1/4, 1/8 resolution), got {widths}")
        w1, w2, w3, w4 = (int(w) for w in widths)
        self.head = nn.Sequential(nn.Conv2d(self.in_channels, w1, 3, padding=1), _ResBlock(w1))
        self.down1 = nn.Sequential(nn.Conv2d(w1, w2, 3, stride=2, padding=1), _ResBlock(w2))
        self.down2 = nn.Sequential(nn.Conv2d(w2, w3, 3, stride=2, padding=1), _ResBlock(w3))
        # 1/8 resolution widens the receptive field for sigma >= 5, motion >= 21, block >= 12.
        self.down3 = nn.Sequential(nn.Conv2d(w3, w4, 3, stride=2, padding=1), _ResBlock(w4), _ResBlock(w4))
        self.up3 = _Up(w4, w3)
        self.up2 = _Up(w3, w2)
        self.up1 = _Up(w2, w1)
        self.tail = nn.Conv2d(w1, 3, 3, padding=1)
        nn.init.zeros_(self.tail.weight)  # start as the base image exactly
        nn.init.zeros_(self.tail.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base = x[:, 3:6] if self.uses_classical else x[:, :3]
        s1 = self.head(x)
        s2 = self.down1(s1)
        s3 = self.down2(s2)
        y = self.up3(self.down3(s3), s3)
        y = self.up2(y, s2)
        y = self.up1(y, s1)
        return base + self.tail(y)
