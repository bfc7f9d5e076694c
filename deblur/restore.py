"""One restorer interface for learned and classical models, used by the app, the audit and the CLI.

:class:`LearnedRestorer` loads a checkpoint written by :mod:`deblur.train` (with ``weights_only=True``),
picks a device, reflect-pads any image size to a multiple of the network's stride and crops back, runs in
batches and supplies the extra input channels a model needs (the classical estimate and/or the strength).
:func:`restorers_for` merges the shipped learned models of ``weights/manifest.json`` with the classical
baselines of :mod:`deblur.classical`. Missing or corrupt weights raise an error naming the file and the
command that retrains it; a restorer never falls back to random weights.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from deblur.degrade import STRENGTHS, as_image
from deblur.models import build_model

__all__ = ["WEIGHTS_DIR", "LearnedRestorer", "assemble_input", "load_checkpoint", "load_manifest", "load_restorer",
           "pick_device", "restorers_for", "sha256_file"]

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
RETRAIN_HINT = "retrain it with `python -m deblur.train --help` (see weights/cards/) or restore it from git"


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` if given, else CUDA when available, else CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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
    """A trained network behind the Restorer protocol of docs/CONTRACTS.md.

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
            from deblur.classical import classical_estimate

            classical = np.stack([classical_estimate(im, self.kind, s) for im, s in zip(imgs, strengths, strict=True)])
            classical = torch.from_numpy(np.ascontiguousarray(classical, np.float32)).permute(0, 3, 1, 2)
        x = torch.from_numpy(imgs).permute(0, 3, 1, 2)
        s = None if strengths is None else torch.tensor(strengths, dtype=torch.float32)
        x = assemble_input(self.model, x, self.kind, classical, s)
        x, h, w = _pad_to_multiple(x.to(self.device), self.stride)
        with torch.inference_mode():
            y = self.model(x)[..., :h, :w]
        return y.clamp(0.0, 1.0).permute(0, 2, 3, 1).float().cpu().numpy()


def load_manifest(weights_dir: str | Path = WEIGHTS_DIR) -> dict:
    """``weights_dir/manifest.json`` as a dict (``{}`` entries when it does not exist yet)."""
    path = Path(weights_dir) / "manifest.json"
    if not path.is_file():
        return {"models": {}}
    return json.loads(path.read_text())


def _from_manifest(name: str, entry: dict, weights_dir: Path, device, verify: bool) -> LearnedRestorer:
    path = weights_dir / entry["file"]
    if verify and path.is_file() and sha256_file(path) != entry["sha256"]:
        raise ValueError(f"weights file {path} does not match the sha256 in {weights_dir / 'manifest.json'}; "
                         f"{RETRAIN_HINT}")
    return LearnedRestorer(path, device=device, name=name, label=entry.get("label"))


def restorers_for(degradation: str, weights_dir: str | Path = WEIGHTS_DIR, device=None,
                  verify: bool = False, include_unoffered: bool = False) -> dict:
    """Every shipped learned model for ``degradation``, its classical baselines and ``"none"``.

    Args:
        degradation: ``"gaussian"``, ``"pixelate"`` or ``"motion"``.
        weights_dir: folder holding ``manifest.json`` and the weights files.
        device: torch device for the learned models.
        verify: also check each file's sha256 against the manifest.
        include_unoffered: also return shipped models whose manifest entry has ``offer: false`` (they do
            not beat the degraded input on average; kept to reproduce the study).
    """
    if degradation not in STRENGTHS:
        raise ValueError(f"unknown degradation {degradation!r}; choose one of {sorted(STRENGTHS)}")
    from deblur.classical import NoRestorer, classical_restorers

    weights_dir = Path(weights_dir)
    out: dict = {}
    for name, entry in load_manifest(weights_dir).get("models", {}).items():
        if entry.get("degradation") == degradation and (include_unoffered or entry.get("offer", True)):
            out[name] = _from_manifest(name, entry, weights_dir, device, verify)
    out.update(classical_restorers(degradation))
    if "none" not in out:
        out["none"] = NoRestorer()
    return out


def load_restorer(name_or_path: str | Path, device=None, weights_dir: str | Path = WEIGHTS_DIR):
    """A restorer by manifest name (``"resunet-gaussian"``), classical name (``"wiener"``) or file path."""
    weights_dir = Path(weights_dir)
    models = load_manifest(weights_dir).get("models", {})
    if str(name_or_path) in models:
        return _from_manifest(str(name_or_path), models[str(name_or_path)], weights_dir, device, verify=False)
    path = Path(name_or_path)
    if path.suffix == ".pt" or path.exists():
        return LearnedRestorer(path, device=device)
    from deblur import classical

    for kind in STRENGTHS:
        found = classical.classical_restorers(kind)
        if str(name_or_path) in found:
            return found[str(name_or_path)]
    raise ValueError(f"unknown restorer {name_or_path!r}; shipped models: {sorted(models)}; or pass a .pt path "
                     "or a classical name (wiener, richardson_lucy, bicubic, none)")
