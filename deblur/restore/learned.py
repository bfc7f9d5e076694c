"""Learned restorers: checkpoints of :mod:`deblur.train` behind the :class:`~deblur.restore.protocol.Restorer` API.

:class:`LearnedRestorer` verifies the file against the ``manifest.json`` next to it (when one lists it), loads
it with ``weights_only=True``, picks a device, reflect-pads any image size to a multiple of the network's
stride and crops back, runs in batches and supplies the extra input channels a model needs (the classical
estimate and/or the strength). Missing, corrupt or tampered weights raise an error naming the file and the
command that fixes it; a restorer never falls back to random weights. Get restorers through
:mod:`deblur.restore.registry`, which builds each one once per process.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from deblur.degrade import as_image
from deblur.models import build_model
from deblur.restore.classical import classical_estimate
from deblur.restore.manifest import RETRAIN_HINT, verify_weights
from deblur.strengths import STRENGTHS

__all__ = ["LearnedRestorer", "assemble_input", "load_checkpoint", "pick_device"]


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` if given, else CUDA when available, else CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint with ``weights_only=True`` and check it has what a restorer needs.

    Raises:
        FileNotFoundError: if the file is missing.
        ValueError: if it cannot be read or lacks ``state_dict``/``model_name``/``model_args``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} not found; {RETRAIN_HINT}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for truncated/garbage files
        raise ValueError(f"weights file {path} is corrupt or not a facedrift checkpoint ({exc}); "
                         f"{RETRAIN_HINT}") from exc
    missing = [k for k in ("state_dict", "model_name", "model_args") if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise ValueError(f"weights file {path} lacks {missing}; {RETRAIN_HINT}")
    return ckpt


def assemble_input(model: nn.Module, degraded: torch.Tensor, kind: str | None,
                   classical: torch.Tensor | None = None, strengths: torch.Tensor | None = None) -> torch.Tensor:
    """Stack the channels ``model`` expects: degraded, [classical estimate], [strength / STRENGTHS.high].

    Args:
        model: a network from :data:`deblur.models.MODELS`.
        degraded: ``N x 3 x H x W``.
        kind: the degradation (needed to normalise the strength).
        classical: ``N x 3 x H x W`` classical estimate, required when ``model.uses_classical``.
        strengths: ``N`` strengths in pixels, required when ``model.uses_strength``.
    """
    parts = [degraded]
    if getattr(model, "uses_classical", False):
        if classical is None:
            raise ValueError("this model refines the classical estimate; pass classical=")
        parts.append(classical)
    if getattr(model, "uses_strength", False):
        if strengths is None or kind is None:
            raise ValueError("this model is non-blind; pass the degradation kind and its strength")
        s = strengths.to(degraded) / float(STRENGTHS[kind].high)
        n, _, h, w = degraded.shape
        parts.append(s.view(n, 1, 1, 1).expand(n, 1, h, w))
    return torch.cat(parts, dim=1)


def _pad_to_multiple(x: torch.Tensor, m: int) -> tuple[torch.Tensor, int, int]:
    h, w = x.shape[-2:]
    ph, pw = (-h) % m, (-w) % m
    if ph or pw:
        # reflect needs the pad smaller than the side; replicate handles tiny images
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = torch.nn.functional.pad(x, (0, pw, 0, ph), mode=mode)
    return x, h, w


class LearnedRestorer:
    """A trained network behind the :class:`~deblur.restore.protocol.Restorer` interface.

    A file listed in the ``manifest.json`` of its folder is checked against the sha256 there first
    (:func:`deblur.restore.manifest.verify_weights`); :attr:`verified` says whether it was.

    Args:
        path: checkpoint written by :mod:`deblur.train`.
        device: ``"cpu"``, ``"cuda"``…; default CUDA when available.
        batch_size: images per forward pass in :meth:`restore_batch`.
        name, label: override the checkpoint's name and label.
    """

    family = "learned"

    def __init__(self, path: str | Path, device: str | torch.device | None = None, batch_size: int = 16,
                 name: str | None = None, label: str | None = None):
        self.path = Path(path)
        self.verified = verify_weights(self.path)  # refuses a file that differs from its manifest entry
        ckpt = load_checkpoint(self.path)
        self.device = pick_device(device)
        self.model = build_model(ckpt["model_name"], **ckpt["model_args"])
        try:
            self.model.load_state_dict(ckpt["state_dict"])
        except RuntimeError as exc:
            raise ValueError(f"weights file {self.path} does not match model {ckpt['model_name']} "
                             f"{ckpt['model_args']}: {exc}; {RETRAIN_HINT}") from exc
        self.model.to(self.device).eval()
        self.checkpoint_meta = {k: v for k, v in ckpt.items() if k != "state_dict"}
        self.name = name or ckpt.get("name") or self.path.stem
        self.label = label or ckpt.get("label") or self.name
        kind = ckpt.get("degradation")
        self.degradations: tuple[str, ...] = (kind,) if kind else ()
        self.kind = kind
        self.uses_classical = bool(getattr(self.model, "uses_classical", False))
        self.uses_strength = bool(getattr(self.model, "uses_strength", False)) or self.uses_classical
        self.stride = int(getattr(self.model, "stride", 1))
        self.batch_size = batch_size

    def __repr__(self) -> str:
        return f"LearnedRestorer({self.name!r}, {self.path.name}, device={self.device})"

    def restore(self, img: np.ndarray, strength: float | None = None) -> np.ndarray:
        """Restore one ``HxWx3`` image; ``strength`` is required when :attr:`uses_strength`."""
        return self.restore_batch(as_image(img)[None], None if strength is None else [strength])[0]

    def restore_batch(self, imgs: np.ndarray, strengths: Sequence[float] | None = None) -> np.ndarray:
        """Restore ``N x H x W x 3`` images (float in [0, 1]) of one size; returns the same shape."""
        imgs = np.asarray(imgs)
        if imgs.ndim == 3:
            imgs = imgs[None]
        imgs = np.stack([as_image(im) for im in imgs])
        if self.uses_strength:
            if strengths is None:
                raise ValueError(f"{self.name} is non-blind: pass the {self.kind} strength")
            strengths = [float(s) for s in strengths]
            if len(strengths) == 1 and len(imgs) > 1:
                strengths = strengths * len(imgs)
            if len(strengths) != len(imgs):
                raise ValueError(f"got {len(strengths)} strengths for {len(imgs)} images")
        out = np.empty_like(imgs)
        for i in range(0, len(imgs), self.batch_size):
            sl = slice(i, i + self.batch_size)
            out[sl] = self._run(imgs[sl], None if strengths is None else strengths[sl])
        return out

    def _run(self, imgs: np.ndarray, strengths: list[float] | None) -> np.ndarray:
        classical = None
        if self.uses_classical:
            classical = np.stack([classical_estimate(im, self.kind, s) for im, s in zip(imgs, strengths, strict=True)])
            classical = torch.from_numpy(np.ascontiguousarray(classical, np.float32)).permute(0, 3, 1, 2)
        x = torch.from_numpy(imgs).permute(0, 3, 1, 2)
        s = None if strengths is None else torch.tensor(strengths, dtype=torch.float32)
        x = assemble_input(self.model, x, self.kind, classical, s)
        x, h, w = _pad_to_multiple(x.to(self.device), self.stride)
        with torch.inference_mode():
            y = self.model(x)[..., :h, :w]
        return y.clamp(0.0, 1.0).permute(0, 2, 3, 1).float().cpu().numpy()
