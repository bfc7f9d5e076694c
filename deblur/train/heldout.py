"""Held-out metrics of one trained model (stored in its checkpoint and card) and the checkerboard diagnostic.

PSNR and SSIM come from :mod:`deblur.metrics` (scikit-image), the same functions the evaluation table and the
audit use. For the table over every restorer see :mod:`deblur.train.evaluate`.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from deblur import degrade, texture
from deblur.data import builtin_faces
from deblur.metrics import psnr, ssim
from deblur.models import build_model
from deblur.restore import assemble_input
from deblur.restore.classical import classical_estimate
from deblur.restore.learned import _pad_to_multiple
from deblur.strengths import EVAL_GRID

__all__ = ["checkerboard_energy", "checkerboard_peak_db", "checkerboard_report",
           "checkerboard_trained_and_init", "heldout_metrics", "model_fn", "real_metrics"]

def heldout_metrics(restore_fn, kind: str, clean: np.ndarray, strengths=None, with_classical: bool = True) -> dict:
    """PSNR/SSIM of the degraded input, the classical estimate and ``restore_fn`` on held-out faces.

    Args:
        restore_fn: ``(degraded N x H x W x 3 float, strength) -> restored`` or None (baselines only).
        kind: degradation.
        clean: ``N x H x W x 3`` uint8 held-out faces.
        strengths: strengths to test (default :data:`deblur.strengths.EVAL_GRID`).

    Returns:
        ``{"by_strength": {"4": {"degraded": {"psnr", "ssim"}, "classical": ..., "model": ...}}, "mean": ...}``.
    """
    strengths = strengths or EVAL_GRID[kind]
    faces = clean.astype(np.float32) / 255
    by: dict = {}
    for s in strengths:
        deg = np.stack([degrade.quantize(degrade.degrade(f, kind, s)) for f in faces])
        outs = {"degraded": deg}
        if with_classical:
            outs["classical"] = np.stack([classical_estimate(d, kind, s) for d in deg])
        if restore_fn is not None:
            outs["model"] = restore_fn(deg, s)
        by[f"{s:g}"] = {
            key: {"psnr": round(float(np.mean([psnr(o, f) for o, f in zip(out, faces, strict=True)])), 3),
                  "ssim": round(float(np.mean([ssim(o, f) for o, f in zip(out, faces, strict=True)])), 4)}
            for key, out in outs.items()
        }
    keys = next(iter(by.values())).keys()
    mean = {k: {m: round(float(np.mean([v[k][m] for v in by.values()])), 4) for m in ("psnr", "ssim")} for k in keys}
    return {"test_faces": len(faces), "by_strength": by, "mean": mean}


def model_fn(model, kind, device, batch=16):
    """Wrap a model as ``(degraded batch, strength) -> restored`` for :func:`heldout_metrics`."""
    def fn(deg: np.ndarray, s: float) -> np.ndarray:
        out = []
        model.eval()
        with torch.inference_mode():
            for i in range(0, len(deg), batch):
                d = deg[i:i + batch]
                x = torch.from_numpy(d).permute(0, 3, 1, 2)
                c = None
                if getattr(model, "uses_classical", False):
                    c = torch.from_numpy(np.stack([classical_estimate(im, kind, s) for im in d])).permute(0, 3, 1, 2)
                inp = assemble_input(model, x, kind, c, torch.full((len(d),), float(s)))
                inp, h, w = _pad_to_multiple(inp.to(device), model.stride)
                out.append(model(inp)[..., :h, :w].clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy())
        return np.concatenate(out)

    return fn


def checkerboard_energy(images: np.ndarray, period: int = 2) -> float:
    """Mean power of ``N x H x W x 3`` images at the spatial frequencies of a ``period``-px grid pattern.

    A stride-2 transposed convolution with uneven overlap stamps a 2-px (and, after two of them, 4-px)
    periodic pattern; in the spectrum it sits at the frequencies ``k * (H/period, W/period)`` other than
    zero (for ``period=4`` without the bins the 2-px grid already owns). We sum the grey-level, mean-removed
    power spectrum over those bins.
    """
    grey = np.asarray(images, np.float64).mean(axis=-1)
    grey = grey - grey.mean(axis=(1, 2), keepdims=True)
    power = np.abs(np.fft.fft2(grey)) ** 2 / (grey.shape[1] * grey.shape[2])
    h, w = grey.shape[1:]
    ys = [(k * h) // period for k in range(period)]
    xs = [(k * w) // period for k in range(period)]
    coarser = period // 2  # bins shared with a 2x finer grid belong to that grid, not this one
    return float(sum(power[:, y, x].mean() for y in ys for x in xs
                     if (y, x) != (0, 0) and not (period > 2 and y % (h // coarser) == 0 and x % (w // coarser) == 0)))


def checkerboard_peak_db(images: np.ndarray, targets: np.ndarray, period: int = 2, radius: int = 3) -> float:
    """How much the error spectrum peaks at the ``period``-px grid frequencies, in dB.

    Power of ``images - targets`` (grey) at the grid bins divided by its mean power in the surrounding
    ``(2 radius + 1)^2`` bins (grid bins excluded), averaged over the grid bins. Broadband error gives about
    0 dB; a periodic stamp (checkerboard) gives a clear positive peak, independently of how much energy the
    clean face has there.
    """
    err = np.asarray(images, np.float64).mean(axis=-1) - np.asarray(targets, np.float64).mean(axis=-1)
    err = err - err.mean(axis=(1, 2), keepdims=True)
    power = (np.abs(np.fft.fft2(err)) ** 2).mean(axis=0)
    h, w = power.shape
    def bins(p: int) -> set:
        return {((k * h) // p, (j * w) // p) for k in range(p) for j in range(p)} - {(0, 0)}

    grid = bins(period)
    own = grid - bins(period // 2) if period > 2 else grid  # bins of a 2x finer grid belong to that grid
    ratios = []
    for y, x in own:
        neigh = [power[(y + dy) % h, (x + dx) % w] for dy in range(-radius, radius + 1)
                 for dx in range(-radius, radius + 1) if ((y + dy) % h, (x + dx) % w) not in grid | {(0, 0)}]
        ratios.append(power[y, x] / max(np.mean(neigh), 1e-20))
    if not power.any():
        return 0.0  # no error at all: no periodic pattern either
    return round(float(10 * np.log10(max(float(np.mean(ratios)), 1e-12))), 2)


def checkerboard_report(outputs: np.ndarray, targets: np.ndarray, inputs: np.ndarray) -> dict:
    """Energy at the stride-2 (period 2) and stride-4 (period 4) grid frequencies, relative to the target.

    Returns ratios ``output / target`` (1 = as much periodic energy as the clean face; >> 1 = checkerboard)
    in dB, the degraded input's ratio for comparison, and :func:`checkerboard_peak_db` of the output's error.
    """
    rep = {}
    for period in (2, 4):
        tgt = checkerboard_energy(targets, period)
        for key, imgs in (("output", outputs), ("input", inputs)):
            ratio = checkerboard_energy(imgs, period) / tgt
            rep[f"period{period}_{key}_vs_target_db"] = round(10 * math.log10(ratio), 2)
        rep[f"period{period}_error_peak_db"] = checkerboard_peak_db(outputs, targets, period)
        rep[f"period{period}_input_error_peak_db"] = checkerboard_peak_db(inputs, targets, period)
    return rep


def checkerboard_trained_and_init(ckpt: dict, n: int = 100) -> dict:
    """Checkerboard report of a trained motion GAN and of the same architecture at initialisation."""
    kind, strength = ckpt["degradation"], float(degrade.STRENGTHS[ckpt["degradation"]].default)
    data = ckpt["data"]
    test = builtin_faces(data["n_faces"], seed=data["face_seed"]).subset("test").images[:n]
    deg = np.stack([degrade.quantize(degrade.degrade(f, kind, strength)) for f in test.astype(np.float32) / 255])
    out = {"strength": strength, "faces": len(test)}
    for label, init in (("trained", False), ("at_init", True)):
        torch.manual_seed(0)
        model = build_model(ckpt["model_name"], **ckpt["model_args"])
        if not init:
            model.load_state_dict(ckpt["state_dict"])
        restored = model_fn(model, kind, torch.device("cpu"))(deg, strength)
        out[label] = checkerboard_report(restored, test / 255.0, deg)
    return out


def real_metrics(ckpt: dict) -> dict:
    """:func:`heldout_metrics` of a checkpoint on each held-out real split (real faces, natural photo tiles)."""
    model = build_model(ckpt["model_name"], **ckpt["model_args"])
    model.load_state_dict(ckpt["state_dict"])
    fn = model_fn(model, ckpt["degradation"], torch.device("cpu"))
    return {split: heldout_metrics(fn, ckpt["degradation"], np.stack([degrade.to_uint8(v) for v in
                                                                      texture.real_split(split).values()]))
            for split in ("real-faces", "real-photos")}
