"""The reference study's motion-blur GAN (its Figure E) and a variant without checkerboard artifacts.

The study's GAN generator upsampled with transposed convolutions and its outputs showed a checkerboard
pattern, which it attributed (after Odena, Dumoulin & Olah, Distill 2016) to the uneven overlap of a
transposed convolution whose kernel size is not divisible by its stride. The report gives no layer sizes,
so this is a small pix2pix-style model of our own: a strided-conv encoder (total stride 4), residual
blocks, and a decoder whose upsampling is selected by ``upsample``:

- ``"transpose"``: ``ConvTranspose2d(kernel 3, stride 2)`` — uneven overlap, the study's artifact.
- ``"resize"``: nearest 2x upsampling then a 3x3 convolution (Distill's fix).
- ``"pixelshuffle"``: 3x3 convolution to 4x channels + ``PixelShuffle(2)`` with ICNR initialisation
  (every sub-pixel starts as a copy, so there is no initial checkerboard).

The generator adds its output to the blurred input (global residual) so short training starts from the
input instead of grey. :class:`PatchDiscriminator` is a conditional 70x70-style PatchGAN (here ~22 px
receptive field) that sees the blurred input next to the sharp or restored image.
"""

from __future__ import annotations

import torch
from torch import nn

UPSAMPLERS = ("transpose", "resize", "pixelshuffle")


def _icnr_(weight: torch.Tensor, scale: int = 2) -> None:
    """ICNR init: each group of ``scale**2`` output channels starts identical (no checkerboard at init)."""
    out_ch, in_ch, kh, kw = weight.shape
    sub = torch.empty(out_ch // scale**2, in_ch, kh, kw)
    nn.init.kaiming_normal_(sub)
    weight.data.copy_(sub.repeat_interleave(scale**2, dim=0))


def _upsample(c_in: int, c_out: int, kind: str) -> nn.Module:
    if kind == "transpose":
        return nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, output_padding=1)
    if kind == "resize":
        return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c_in, c_out, 3, padding=1))
    if kind == "pixelshuffle":
        conv = nn.Conv2d(c_in, c_out * 4, 3, padding=1)
        _icnr_(conv.weight)
        return nn.Sequential(conv, nn.PixelShuffle(2))
    raise ValueError(f"unknown upsample {kind!r}; choose one of {UPSAMPLERS}")


class _ResBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.LeakyReLU(0.2, True), nn.Conv2d(c, c, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class MotionGANGenerator(nn.Module):
    """Encoder / residual blocks / decoder generator for motion deblurring.

    Args:
        upsample: ``"transpose"`` (the study's, shows checkerboard), ``"resize"`` or ``"pixelshuffle"``.
        width: channels at full resolution (x2, x4 after each downsampling).
        blocks: residual blocks at 1/4 resolution.

    Input ``N x 3 x H x W`` in ``[0, 1]``, ``H, W`` multiples of :attr:`stride`; output the same shape.
    """

    stride = 4
    uses_classical = False
    uses_strength = False

    def __init__(self, upsample: str = "transpose", width: int = 24, blocks: int = 3):
        super().__init__()
        if upsample not in UPSAMPLERS:
            raise ValueError(f"unknown upsample {upsample!r}; choose one of {UPSAMPLERS}")
        self.in_channels = 3
        w = width
        act = nn.LeakyReLU(0.2, True)
        self.encoder = nn.Sequential(
            nn.Conv2d(3, w, 5, padding=2), act,
            nn.Conv2d(w, 2 * w, 4, stride=2, padding=1), act,
            nn.Conv2d(2 * w, 4 * w, 4, stride=2, padding=1), act,
        )
        self.body = nn.Sequential(*[_ResBlock(4 * w) for _ in range(blocks)])
        self.decoder = nn.Sequential(
            _upsample(4 * w, 2 * w, upsample), act,
            _upsample(2 * w, w, upsample), act,
            nn.Conv2d(w, 3, 5, padding=2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x + self.decoder(self.body(self.encoder(x)))).clamp(0.0, 1.0)


class PatchDiscriminator(nn.Module):
    """Conditional PatchGAN: scores overlapping patches of ``cat(blurred, image)`` as real or restored.

    Args:
        width: channels of the first layer.

    Returns logits of shape ``N x 1 x H/4 x W/4`` (roughly).
    """

    def __init__(self, width: int = 32):
        super().__init__()
        w = width
        act = nn.LeakyReLU(0.2, True)
        self.net = nn.Sequential(
            nn.Conv2d(6, w, 4, stride=2, padding=1), act,
            nn.Conv2d(w, 2 * w, 4, stride=2, padding=1), nn.InstanceNorm2d(2 * w), act,
            nn.Conv2d(2 * w, 4 * w, 3, padding=1), nn.InstanceNorm2d(4 * w), act,
            nn.Conv2d(4 * w, 1, 3, padding=1),
        )

    def forward(self, blurred: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([blurred, image], dim=1))
