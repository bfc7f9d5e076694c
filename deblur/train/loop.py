"""The training loop and its configuration (:class:`TrainConfig`); the package docstring says what a run does."""

from __future__ import annotations

import json
import math
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from deblur import degrade, texture
from deblur.data import builtin_faces
from deblur.metrics import psnr
from deblur.models import PatchDiscriminator, build_model, count_params
from deblur.restore import assemble_input, pick_device
from deblur.restore.classical import classical_estimate
from deblur.train.heldout import checkerboard_report, heldout_metrics, model_fn

__all__ = ["TrainConfig", "cosine_lr", "make_pairs", "save_checkpoint", "train"]


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in the checkpoint).

    Attributes:
        model: key of :data:`deblur.models.MODELS`.
        degradation: ``gaussian``, ``pixelate`` or ``motion``.
        strengths: ``(low, high)`` range sampled uniformly per training image (pixels).
        model_args: keyword arguments for ``build_model``.
        name: checkpoint name (default ``<model>-<degradation>``).
        minutes: wall-clock training budget; training stops at ``minutes`` or ``max_steps``.
        max_steps: optional step limit.
        batch: patches per step.
        patch: patch side in pixels (cut from the full degraded image).
        lr: AdamW learning rate (cosine decay over the budget).
        seed: seeds numpy and torch.
        n_faces, face_seed: the built-in face set.
        pairs_per_face: degraded versions (random strengths) precomputed per training face.
        val_faces: validation faces (val split) for the progress PSNR.
        eval_faces: held-out test faces for the final metrics (0 = skip).
        texture: natural-photo crops added to the training split (:func:`deblur.texture.with_texture`).
        jpeg, noise: probability that a training input is JPEG re-encoded / gets sensor noise after the
            degradation (:func:`deblur.texture.photo_artifacts`), as a saved photo would.
        adv_weight: weight of the LSGAN loss against a PatchGAN (0 = plain L1 training).
        loss: ``l1`` or ``mse``.
        out: checkpoint path.
        device: ``cpu``/``cuda``; default CUDA when available.
    """

    model: str = "resunet"
    degradation: str = "gaussian"
    strengths: tuple[float, float] = (0.0, 8.0)
    model_args: dict = field(default_factory=dict)
    name: str = ""
    minutes: float = 10.0
    max_steps: int = 0
    batch: int = 16
    patch: int = 64
    lr: float = 5e-4
    seed: int = 0
    n_faces: int = 4000
    face_seed: int = 0
    pairs_per_face: int = 1
    val_faces: int = 64
    eval_faces: int = 100
    texture: int = 0
    jpeg: float = 0.0
    noise: float = 0.0
    adv_weight: float = 0.0
    loss: str = "l1"
    out: str = ""
    device: str | None = None

    def __post_init__(self):
        degrade._check_kind(self.degradation)
        lo, hi = (float(s) for s in self.strengths)
        self.strengths = (lo, hi)
        if hi < lo:
            raise ValueError(f"strength range {self.strengths} is empty")
        self.name = self.name or f"{self.model}-{self.degradation}"
        self.out = self.out or f"weights/{self.name}.pt"


def _mean_psnr(outs: np.ndarray, clean: np.ndarray) -> float:
    # capped at 60 dB: an identity-strength sample (sigma 0, block 1) would otherwise make the mean infinite
    return round(float(np.mean([min(60.0, psnr(o, c)) for o, c in zip(outs, clean, strict=True)])), 3)


def make_pairs(images: np.ndarray, kind: str, strengths: tuple[float, float], rng: np.random.Generator,
               pairs_per_face: int = 1, with_classical: bool = False, fixed: float | None = None,
               artifacts=None) -> dict:
    """Degrade whole faces (8-bit rounded) and optionally compute their classical estimates.

    Args:
        images: ``N x H x W x 3`` uint8 clean faces.
        kind: degradation.
        strengths: ``(low, high)``; ignored when ``fixed`` is given.
        rng: the only source of randomness.
        pairs_per_face: degraded versions per face.
        with_classical: also compute :func:`deblur.restore.classical.classical_estimate`.
        fixed: use this strength for every image.
        artifacts: optional ``(img, rng) -> img`` applied after the degradation, before 8-bit rounding.

    Returns:
        dict with ``clean`` (uint8 index into ``images``), ``degraded`` uint8, ``classical`` float16 or None,
        ``strength`` float32.
    """
    idx = np.repeat(np.arange(len(images)), pairs_per_face)
    degraded = np.empty((len(idx),) + images.shape[1:], np.uint8)
    classical = np.empty(degraded.shape, np.float16) if with_classical else None
    strength = np.empty(len(idx), np.float32)
    for j, i in enumerate(idx):
        s = fixed if fixed is not None else degrade.random_strength(kind, rng, *strengths)
        d = degrade.degrade(images[i], kind, s)
        d = degrade.quantize(artifacts(d, rng) if artifacts is not None else d)
        degraded[j] = np.round(d * 255).astype(np.uint8)
        strength[j] = s
        if with_classical:
            classical[j] = classical_estimate(d, kind, s)
    return {"clean": idx, "degraded": degraded, "classical": classical, "strength": strength}


def _batch(images: np.ndarray, pairs: dict, rows: np.ndarray, patch: int, rng: np.random.Generator):
    """Random ``patch`` crops of the given pair rows as NCHW float tensors."""
    h, w = images.shape[1:3]
    ys = rng.integers(0, h - patch + 1, len(rows))
    xs = rng.integers(0, w - patch + 1, len(rows))

    def crop(arr, sel):
        return np.stack([arr[r, y:y + patch, x:x + patch] for r, y, x in zip(sel, ys, xs, strict=True)])

    clean = torch.from_numpy(crop(images, pairs["clean"][rows]).astype(np.float32) / 255).permute(0, 3, 1, 2)
    deg = torch.from_numpy(crop(pairs["degraded"], rows).astype(np.float32) / 255).permute(0, 3, 1, 2)
    cls = None
    if pairs["classical"] is not None:
        cls = torch.from_numpy(crop(pairs["classical"], rows).astype(np.float32)).permute(0, 3, 1, 2)
    return deg, cls, torch.from_numpy(pairs["strength"][rows]), clean


def _forward(model, kind, deg, cls, s):
    return model(assemble_input(model, deg, kind, cls, s))


def _plain(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    return str(obj)


def cosine_lr(lr: float, step: int, frac: float, warmup: int) -> float:
    """Learning rate at ``step``: linear warm-up over ``warmup`` steps, then cosine decay over ``frac`` (the
    fraction of the wall-clock budget spent)."""
    return lr * min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))


def save_checkpoint(model: torch.nn.Module, meta: dict, out: str | Path) -> dict:
    """Save ``model``'s CPU ``state_dict`` and ``meta`` to ``out`` with ``torch.save``; returns the checkpoint.

    ``meta`` is turned into plain JSON types (numpy scalars, TorchVersion... are not allowed by
    ``weights_only=True`` loading).
    """
    ckpt = {"state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            **json.loads(json.dumps(meta, default=_plain))}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, out)
    return ckpt


def _describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    cpu = " ".join(filter(None, (platform.machine(), platform.processor())))
    return f"cpu: {cpu}, {torch.get_num_threads()} threads"


def train(cfg: TrainConfig, faces=None, progress: bool = True) -> dict:
    """Train according to ``cfg``, save the checkpoint to ``cfg.out`` and return it.

    Args:
        cfg: the run's configuration.
        faces: a :class:`deblur.data.FaceSet` to use instead of ``builtin_faces(cfg.n_faces, cfg.face_seed)``.
        progress: show a tqdm bar.
    """
    t_start = time.time()
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    device = pick_device(cfg.device)
    if device.type == "cpu":
        torch.set_num_threads(2)
    faces = faces if faces is not None else builtin_faces(cfg.n_faces, seed=cfg.face_seed)
    faces = texture.with_texture(faces, cfg.texture, np.random.default_rng([cfg.seed, 2]))
    artifacts = texture.photo_artifacts(cfg.jpeg, cfg.noise) if cfg.jpeg or cfg.noise else None
    model = build_model(cfg.model, **cfg.model_args).to(device)
    kind = cfg.degradation
    with_cls = bool(getattr(model, "uses_classical", False))
    train_imgs = faces.subset("train").images
    val_imgs = faces.subset("val").images[: cfg.val_faces]
    t0 = time.time()
    pairs = make_pairs(train_imgs, kind, cfg.strengths, rng, cfg.pairs_per_face, with_cls, artifacts=artifacts)
    val = make_pairs(val_imgs, kind, cfg.strengths, np.random.default_rng([cfg.seed, 1]), 1, with_cls)
    prep_seconds = time.time() - t0

    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    disc = opt_d = None
    if cfg.adv_weight > 0:
        disc = PatchDiscriminator().to(device)
        opt_d = torch.optim.AdamW(disc.parameters(), lr=cfg.lr * 0.5, betas=(0.5, 0.999))
    budget = cfg.minutes * 60.0
    loss_fn = F.l1_loss if cfg.loss == "l1" else F.mse_loss
    step, t_train = 0, time.time()
    bar = tqdm(total=int(budget), unit="s", disable=not progress, desc=cfg.name)
    ema = None
    while True:
        elapsed = time.time() - t_train
        if elapsed >= budget or (cfg.max_steps and step >= cfg.max_steps):
            break
        frac = elapsed / budget
        for g in opt.param_groups:  # cosine decay with a short warm-up, over wall-clock time
            g["lr"] = cosine_lr(cfg.lr, step, frac, warmup=100)
        model.train()
        rows = rng.integers(0, len(pairs["clean"]), cfg.batch)
        deg, cls, s, clean = (t if t is None else t.to(device) for t in _batch(train_imgs, pairs, rows, cfg.patch, rng))
        out = _forward(model, kind, deg, cls, s)
        loss = loss_fn(out, clean)
        if disc is not None:
            pred_fake = disc(deg, out)
            loss = loss + cfg.adv_weight * F.mse_loss(pred_fake, torch.ones_like(pred_fake))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if disc is not None:
            pr, pf = disc(deg, clean), disc(deg, out.detach())
            loss_d = 0.5 * (F.mse_loss(pr, torch.ones_like(pr)) + F.mse_loss(pf, torch.zeros_like(pf)))
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
        base = loss_fn(cls if cls is not None else deg, clean).item()  # the input the model must improve on
        ema = (loss.item(), base) if ema is None else (0.98 * ema[0] + 0.02 * loss.item(), 0.98 * ema[1] + 0.02 * base)
        step += 1
        if step % 20 == 0:
            bar.n = min(int(time.time() - t_train), int(budget))
            bar.set_postfix(step=step, loss=f"{ema[0]:.4f}", input_loss=f"{ema[1]:.4f}")
            bar.refresh()
    bar.close()
    train_seconds = time.time() - t_train

    fn = model_fn(model, kind, device)
    val_out = np.concatenate([fn(val["degraded"][i:i + 1].astype(np.float32) / 255, float(val["strength"][i]))
                              for i in range(len(val_imgs))])
    val_clean = val_imgs.astype(np.float32) / 255
    val_deg = val["degraded"].astype(np.float32) / 255
    metrics = {"val_psnr": _mean_psnr(val_out, val_clean), "val_psnr_degraded": _mean_psnr(val_deg, val_clean),
               "val_mse": float(np.mean((val_out - val_clean) ** 2)), "steps": step,
               "patches_seen": step * cfg.batch, "prep_seconds": round(prep_seconds, 1)}
    if cfg.eval_faces:
        test = faces.subset("test").images[: cfg.eval_faces]
        metrics["test"] = heldout_metrics(fn, kind, test)
        if cfg.model == "motion_gan":
            s_mid = float(degrade.STRENGTHS[kind].default)
            deg = np.stack([degrade.quantize(degrade.degrade(f, kind, s_mid)) for f in test.astype(np.float32) / 255])
            metrics["checkerboard"] = {"strength": s_mid, **checkerboard_report(fn(deg, s_mid), test / 255.0, deg)}
    meta = {
        "model_name": cfg.model, "model_args": dict(cfg.model_args), "name": cfg.name,
        "degradation": kind, "strengths": list(cfg.strengths),
        "train_config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
        "metrics": metrics, "train_seconds": round(train_seconds, 1),
        "total_seconds": round(time.time() - t_start, 1), "params": count_params(model),
        "device": _describe(device),
        "data": {"source": "builtin_faces", "n_faces": len(faces) - cfg.texture, "face_seed": cfg.face_seed,
                 "train_faces": len(train_imgs) - cfg.texture, "texture_patches": cfg.texture, "jpeg_p": cfg.jpeg,
                "noise_p": cfg.noise, "pairs_per_face": cfg.pairs_per_face, "patch": cfg.patch,
                 "quantized": True, "meta": {k: v for k, v in faces.meta.items() if isinstance(v, (str, int, float))}},
        "torch": str(torch.__version__),
    }
    return save_checkpoint(model, meta, cfg.out)
