"""Train a restoration model on the built-in faces: ``python -m deblur.train --model resunet ...``.

Data: ``builtin_faces(n_faces, seed=face_seed)`` (128² generated faces, 64 px native). Each training face
is degraded ``pairs_per_face`` times at random strengths drawn from ``[low, high]`` with an explicit
``np.random.Generator``, rounded to 8 bits (:func:`deblur.degrade.quantize`), and — for models that refine
it — given its classical estimate, all on the FULL image before random ``patch x patch`` crops are cut, so
patches see the same boundary conditions as whole faces. Validation uses the ``val`` split, the final
metrics in the checkpoint the held-out ``test`` split (see :func:`evaluate`).

Checkpoints (``torch.save``) hold ``state_dict``, ``model_name``, ``model_args``, ``name``,
``degradation``, ``strengths``, ``train_config``, ``metrics``, ``train_seconds``, ``device``, ``params``,
``data``; every value is a plain type so :func:`deblur.restore.load_checkpoint` can use
``weights_only=True``.
"""

from __future__ import annotations

import argparse
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
from deblur.models import PatchDiscriminator, build_model, count_params
from deblur.restore import assemble_input, pick_device
from deblur.strengths import EVAL_GRID

__all__ = ["TrainConfig", "checkerboard_energy", "checkerboard_report", "evaluate", "make_pairs",
           "psnr", "train"]



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


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB between two images in ``[0, 1]``."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * math.log10(1.0 / mse)


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
    if with_classical:
        from deblur.restore.classical import classical_estimate
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


def evaluate(restore_fn, kind: str, clean: np.ndarray, strengths=None, with_classical: bool = True) -> dict:
    """PSNR/SSIM of the degraded input, the classical estimate and ``restore_fn`` on held-out faces.

    Args:
        restore_fn: ``(degraded N x H x W x 3 float, strength) -> restored`` or None (baselines only).
        kind: degradation.
        clean: ``N x H x W x 3`` uint8 held-out faces.
        strengths: strengths to test (default :data:`deblur.strengths.EVAL_GRID`).

    Returns:
        ``{"by_strength": {"4": {"degraded": {"psnr", "ssim"}, "classical": ..., "model": ...}}, "mean": ...}``.
    """
    from skimage.metrics import structural_similarity

    from deblur.restore.classical import classical_estimate

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
                  "ssim": round(float(np.mean([structural_similarity(o, f, channel_axis=2, data_range=1.0)
                                               for o, f in zip(out, faces, strict=True)])), 4)}
            for key, out in outs.items()
        }
    keys = next(iter(by.values())).keys()
    mean = {k: {m: round(float(np.mean([v[k][m] for v in by.values()])), 4) for m in ("psnr", "ssim")} for k in keys}
    return {"test_faces": len(faces), "by_strength": by, "mean": mean}


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


def _model_fn(model, kind, device, batch=16):
    """Wrap a model as ``(degraded batch, strength) -> restored`` for :func:`evaluate`."""
    from deblur.restore.classical import classical_estimate
    from deblur.restore.learned import _pad_to_multiple

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


def _plain(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    return str(obj)


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
            g["lr"] = cfg.lr * min(1.0, (step + 1) / 100) * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))
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

    fn = _model_fn(model, kind, device)
    val_out = np.concatenate([fn(val["degraded"][i:i + 1].astype(np.float32) / 255, float(val["strength"][i]))
                              for i in range(len(val_imgs))])
    val_clean = val_imgs.astype(np.float32) / 255
    val_deg = val["degraded"].astype(np.float32) / 255
    metrics = {"val_psnr": _mean_psnr(val_out, val_clean), "val_psnr_degraded": _mean_psnr(val_deg, val_clean),
               "val_mse": float(np.mean((val_out - val_clean) ** 2)), "steps": step,
               "patches_seen": step * cfg.batch, "prep_seconds": round(prep_seconds, 1)}
    if cfg.eval_faces:
        test = faces.subset("test").images[: cfg.eval_faces]
        metrics["test"] = evaluate(fn, kind, test)
        if cfg.model == "motion_gan":
            s_mid = float(degrade.STRENGTHS[kind].default)
            deg = np.stack([degrade.quantize(degrade.degrade(f, kind, s_mid)) for f in test.astype(np.float32) / 255])
            metrics["checkerboard"] = {"strength": s_mid, **checkerboard_report(fn(deg, s_mid), test / 255.0, deg)}
    ckpt = {
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
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
    # plain JSON types only (numpy scalars, TorchVersion… are not allowed by weights_only=True loading)
    ckpt = {"state_dict": ckpt.pop("state_dict"), **json.loads(json.dumps(ckpt, default=_plain))}
    Path(cfg.out).parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, cfg.out)
    return ckpt


LABELS = {
    "resunet": "Residual U-Net on the classical estimate (ours, non-blind)",
    "seed_ae": "Study autoencoder, 29,507 params (blind)",
    "pix_ae": "Study pixelation autoencoder (blind)",
    "motion_gan": "Study-style GAN (blind)",
}
SUMMARIES = {
    "resunet": "Our residual U-Net (PixelShuffle upsampling). It is told the strength and refines the classical "
               "non-blind estimate (`deblur.restore.classical.classical_estimate`), so a zero correction reproduces "
               "the classical baseline. One model covers the whole strength range it was trained on.",
    "seed_ae": "Reproduction of the reference study's Gaussian-blur autoencoder: exactly 29,507 parameters, two "
               "32-kernel convolutions with max-pooling in the encoder, two with upsampling in the decoder, a "
               "sigmoid output. Blind (not told σ). Kept to show what the study's model does, not because it is good.",
    "pix_ae": "Reproduction of one of the study's six pixelation autoencoders (the lowest validation MSE of our "
              "Figure C sweep, `weights/sweep/`). Blind, trained at a single block size.",
    "motion_gan": "Study-style motion-blur GAN: strided-conv encoder, residual blocks, a decoder whose upsampling is "
                  "`{upsample}`, trained with L1 + LSGAN loss against a conditional PatchGAN. Blind (not told the "
                  "length).",
}


NOT_OFFERED = ("NO: it does not beat the degraded input on average (kept to reproduce the study; "
               "`restorers_for(..., include_unoffered=True)` lists it)")


def _real_section(entry: dict) -> list[str]:
    """Card lines: PSNR on the held-out real photographs next to the classical baseline (see :func:`_real_metrics`)."""
    real = entry["metrics"].get("real")
    if not real:
        return []
    lines = ["", "## Real photographs (held-out; generated-face numbers above)", "",
             "`deblur.texture.real_split`: `real-faces` = 8 aligned crops (several margins) of the only two real "
             "faces we have offline (scikit-image's astronaut, matplotlib's grace_hopper); `real-photos` = 16 tiles "
             "of two natural photographs (coffee, rocket). None of them was used for training. Degraded and rounded "
             "to 8 bits like the test faces.", "",
             "| images | strength | degraded PSNR | classical PSNR | this model PSNR | Δ vs classical |",
             "|---|---|---|---|---|---|"]
    for split, res in real.items():
        for st, r in res["by_strength"].items():
            m, c = r["model"]["psnr"], r["classical"]["psnr"]
            lines.append(f"| {split} ({res['test_faces']}) | {st} | {r['degraded']['psnr']:.2f} | {c:.2f} | "
                         f"{m:.2f} | {m - c:+.2f} |")
    return lines + ["", f"Offer rule: {entry.get('offer_reason', '')}"]


def _real_metrics(ckpt: dict) -> dict:
    """:func:`evaluate` of a checkpoint on each held-out real split (real faces, natural photo tiles)."""
    model = build_model(ckpt["model_name"], **ckpt["model_args"])
    model.load_state_dict(ckpt["state_dict"])
    fn = _model_fn(model, ckpt["degradation"], torch.device("cpu"))
    return {split: evaluate(fn, ckpt["degradation"], np.stack([degrade.to_uint8(v) for v in
                                                               texture.real_split(split).values()]))
            for split in ("real-faces", "real-photos")}


def _offer(entry: dict) -> tuple[bool, str]:
    """Offer a model if it beats the degraded input on average and, when told the strength, is at least its
    classical baseline on every real split at the middle tested strength."""
    mean = entry["metrics"]["test"]["mean"]
    if mean["model"]["psnr"] <= mean["degraded"]["psnr"]:
        return False, "not offered: it does not beat the degraded input on average (generated faces)"
    if not entry["uses_strength"] or "real" not in entry["metrics"]:
        return True, ("offered: beats the degraded input; blind, so the non-blind classical baseline is not its "
                      "like-for-like comparison")
    worse = []
    for split, res in entry["metrics"]["real"].items():
        keys = list(res["by_strength"])
        mid = keys[len(keys) // 2]
        r = res["by_strength"][mid]
        if r["model"]["psnr"] < r["classical"]["psnr"]:
            worse.append(f"{split} at {mid} ({r['model']['psnr'] - r['classical']['psnr']:+.2f} dB)")
    if worse:
        return False, ("not offered: below its classical baseline on real photographs at mid strength: "
                       + ", ".join(worse))
    return True, ("offered: beats the degraded input, and at least its classical baseline on every real split at mid "
                  "strength")


def _verdict(test: dict) -> list[str]:
    lines = []
    for s, row in test["by_strength"].items():
        m, d, c = row["model"]["psnr"], row["degraded"]["psnr"], row["classical"]["psnr"]
        lines.append(f"- strength {s}: {m - d:+.2f} dB vs the degraded input, {m - c:+.2f} dB vs the classical "
                     f"baseline ({'beats' if m > c else 'does NOT beat'} it).")
    return lines


def write_card(name: str, entry: dict, cards_dir: str | Path = "weights/cards") -> Path:
    """Write ``cards_dir/<name>.md`` from a manifest entry (metrics table, data, uses, limits)."""
    test = entry["metrics"]["test"]
    rows = ["| strength | degraded PSNR / SSIM | classical PSNR / SSIM | this model PSNR / SSIM |", "|---|---|---|---|"]
    for s, r in test["by_strength"].items():
        rows.append(f"| {s} | " + " | ".join(f"{r[k]['psnr']:.2f} / {r[k]['ssim']:.3f}"
                                             for k in ("degraded", "classical", "model")) + " |")
    summary = SUMMARIES[entry["model"]].format(upsample=entry["model_args"].get("upsample"))
    extra = []
    if "at_init" in entry["metrics"].get("checkerboard", {}):
        cb = entry["metrics"]["checkerboard"]
        extra = ["", "## Checkerboard artifact", "",
                 f"On {cb['faces']} test faces at length {cb['strength']:g} (`deblur.train.checkerboard_report`). "
                 "*Energy vs clean*: spectral energy at the grid frequencies of a 2-px / 4-px pattern relative to "
                 "the clean face (0 dB = as much as the clean face). *Error peak*: power of the error (output − "
                 "clean) at those frequencies relative to neighbouring frequencies (about 0–3 dB = no periodic "
                 "pattern; a checkerboard gives a clear peak).", "",
                 "| | energy vs clean, 2 px | energy vs clean, 4 px | error peak, 2 px | error peak, 4 px |",
                 "|---|---|---|---|---|"]
        for label, key in (("trained model", "trained"), ("same architecture at initialisation", "at_init")):
            r = cb[key]
            extra.append(f"| {label} | {r['period2_output_vs_target_db']:+.1f} dB | "
                         f"{r['period4_output_vs_target_db']:+.1f} dB | {r['period2_error_peak_db']:+.1f} dB | "
                         f"{r['period4_error_peak_db']:+.1f} dB |")
        r = cb["trained"]
        extra.append(f"| degraded input | {r['period2_input_vs_target_db']:+.1f} dB | "
                     f"{r['period4_input_vs_target_db']:+.1f} dB | {r['period2_input_error_peak_db']:+.1f} dB | "
                     f"{r['period4_input_error_peak_db']:+.1f} dB |")
    sweep_csv = Path(cards_dir).parent / "sweep" / "pix_ae_sweep.csv"
    if entry["model"] == "pix_ae" and sweep_csv.is_file():
        import csv

        with open(sweep_csv) as f:
            sweep = list(csv.DictReader(f))
        extra += ["", "## Figure C sweep (`python -m deblur.sweep`, `weights/sweep/`)", "",
                  "All six architectures trained on the same data and optimiser for the same wall-clock budget "
                  "(block 8; validation = 64 val-split faces). The study trained equal epochs instead; here the "
                  "cost of a bigger model shows as fewer steps in the same time.", "",
                  "| architecture | params | val MSE | val PSNR | steps | s / 1k patches |",
                  "|---|---|---|---|---|---|"]
        extra += [f"| {r['config']} | {int(float(r['params'])):,} | {float(r['val_mse']):.5f} | "
                  f"{float(r['val_psnr']):.2f} | {int(float(r['steps']))} | {float(r['seconds_per_1k_patches']):.1f} |"
                  for r in sweep]
        extra += ["", f"Degraded input on the same validation faces: {float(sweep[0]['val_psnr_degraded']):.2f} dB."]
        mses = [float(r["val_mse"]) for r in sweep]
        best = int(np.argmin(mses))
        per_patch = [float(r["seconds_per_1k_patches"]) for r in sweep]
        cost = float(np.mean([b / a for a, b in zip(per_patch, per_patch[1:], strict=False)]))
        steps = [f"{(b / a - 1) * 100:+.0f}%" for a, b in zip(mses, mses[1:], strict=False)]
        extra += ["", f"**Does doubling the parameters help?** Change in validation MSE from each architecture to the "
                      f"next (each has ~2x the parameters): {', '.join(steps)}; the best is {sweep[best]['config']} "
                      f"({mses[best]:.5f} vs {mses[0]:.5f} for the smallest). Each doubling also costs "
                      f"{cost:.1f}x "
                      "the time per patch on average.", "",
                  "Reading: like the study, one doubling (a to b) helps a little and further doublings do not pay. "
                  "At an equal time budget the large models are simply under-trained (architecture f managed under "
                  "100 steps); this sweep says what a fixed CPU budget buys, not where each model would converge. "
                  "Timings were taken on a CPU shared with other jobs, so the per-patch costs are noisy (a is "
                  "slower than b for that reason)."]
    lo, hi = entry["strengths"]
    text = "\n".join([
        f"# Model card: `{name}`", "", summary, "",
        f"- weights: `weights/{entry['file']}` ({entry['size_bytes'] / 1e6:.1f} MB, sha256 `{entry['sha256'][:16]}…`)",
        f"- architecture: `{entry['model']}` {json.dumps(entry['model_args'])}, {entry['params']:,} parameters",
        f"- degradation: {entry['degradation']}, trained on strengths {lo:g}–{hi:g} px "
        f"({'told the strength' if entry['uses_strength'] else 'blind: not told the strength'})",
        f"- training: {entry['train_seconds'] / 60:.1f} min on {entry['device']} ({entry['steps']} steps of "
        f"{entry['train_config']['batch']} patches of {entry['train_config']['patch']} px)"
        + ("; shared 2-core CPU, so the same budget on a quiet machine or a GPU would go further"
           if entry["device"].startswith("cpu") else ""),
        f"- retrain: `python -m deblur.train {entry['retrain']}`",
        f"- offered by `restorers_for` (the app/audit): {'yes' if entry['offer'] else 'NO'} — "
        f"{entry.get('offer_reason', NOT_OFFERED)} (unoffered models stay for reproduction: "
        "`restorers_for(..., include_unoffered=True)` lists them)",
        "",
        "## Training data and its limits", "",
        f"{entry['data']['train_faces']} faces of the built-in set (`deblur.data.builtin_faces("
        f"{entry['data']['n_faces']}, seed={entry['data']['face_seed']})`, train split): synthetic faces from "
        "the gan-face-generate DCGAN "
        "(trained on DigiFace-1M renders), **64 px native, upscaled bicubically to 128 px**, kept when OpenCV's Haar "
        "cascade finds a face. Degraded on the full 128² face, rounded to 8 bits, then random patches are cut. "
        "These faces are smooth, centred, frontal and evenly lit; they carry no real identities and no "
        "demographic labels. Real photos (noise, JPEG, other blur kernels, sharp 128-px detail, "
        "non-frontal poses) are out of distribution"
        + (f"; to bring real texture in, {entry['data']['texture_patches']} random crops of scikit-image's natural "
           "photographs (`deblur.texture.texture_patches`: scale ×0.5–1.5, flips, 90° rotations, colour jitter) "
           f"joined the training set, and inputs were JPEG re-encoded (quality 50–95) with probability "
           f"{entry['data'].get('jpeg_p', 0):g} and given sensor noise with probability "
           f"{entry['data'].get('noise_p', 0):g} after the degradation." if entry["data"].get("texture_patches")
           else ".")
        + (f" Faces: {entry['data']['subset']}." if entry["data"].get("subset") else ""), "",
        f"## Held-out metrics ({test['test_faces']} test-split faces, degraded and rounded to 8 bits)", "",
        "Classical baseline = `deblur.restore.classical.classical_estimate` (non-blind: Wiener with an identity "
        "regulariser for blur, bicubic of the block grid for pixelation).", "", *rows, "", *_verdict(test),
        *_real_section(entry), *extra, "",
        "## Intended use", "",
        "Research and teaching: showing what face 'deblurring' models do to degraded faces, and auditing how much "
        "identity they restore or distort (facedrift's audit and playground).", "",
        "## Out of scope", "",
        "- Identifying, re-identifying or 'unmasking' people from blurred or pixelated photos.",
        "- Evidence of any kind (forensics, law enforcement, journalism).",
        "- Any image that is not a 128-px-scale face crop like the training data.", "",
        "## Outputs are reconstructions, not recovered faces", "",
        "The output is the model's guess of a plausible sharp face given the training data. Detail the "
        "degradation destroyed is invented or averaged, not recovered; a sharp-looking output can move *away* "
        "from the real person's identity. Never treat an output as what the person looks like.", ""])
    path = Path(cards_dir) / f"{name}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _retrain_args(cfg: dict) -> str:
    args = f"--model {cfg['model']} --degradation {cfg['degradation']} --strengths {cfg['strengths'][0]:g} " \
           f"{cfg['strengths'][1]:g} --minutes {cfg['minutes']:g} --pairs-per-face {cfg['pairs_per_face']}"
    if cfg["model_args"]:
        args += f" --model-args '{json.dumps(cfg['model_args'])}'"
    if cfg["adv_weight"]:
        args += f" --adv-weight {cfg['adv_weight']:g}"
    for key in ("texture", "jpeg", "noise"):  # absent in checkpoints trained before these options existed
        if cfg.get(key):
            args += f" --{key} {cfg[key]:g}"
    return args + f" --name {cfg['name']}"


def _checkerboard_trained_and_init(ckpt: dict, n: int = 100) -> dict:
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
        restored = _model_fn(model, kind, torch.device("cpu"))(deg, strength)
        out[label] = checkerboard_report(restored, test / 255.0, deg)
    return out


def ship(weights_dir: str | Path = "weights") -> dict:
    """Rebuild ``weights_dir/manifest.json`` and the model cards from the ``*.pt`` files there."""
    from deblur.restore import load_checkpoint, sha256_file

    weights_dir = Path(weights_dir)
    models = {}
    for path in sorted(weights_dir.glob("*.pt")):
        ckpt = load_checkpoint(path)
        name = ckpt.get("name") or path.stem
        cfg = ckpt["train_config"]
        model = build_model(ckpt["model_name"], **ckpt["model_args"])
        entry = {
            "file": path.name, "sha256": sha256_file(path), "size_bytes": path.stat().st_size,
            "model": ckpt["model_name"], "model_args": ckpt["model_args"],
            "label": LABELS[ckpt["model_name"]] + (f", {ckpt['model_args']['upsample']} upsampling"
                                                  if "upsample" in ckpt["model_args"] else ""),
            "degradation": ckpt["degradation"], "strengths": ckpt["strengths"],
            "uses_strength": bool(getattr(model, "uses_strength", False) or getattr(model, "uses_classical", False)),
            "params": ckpt["params"], "data": ckpt["data"], "train_seconds": ckpt["train_seconds"],
            "steps": ckpt["metrics"]["steps"], "device": " ".join(ckpt["device"].split()).replace(" ,", ","),
            "train_config": cfg,
            "metrics": {k: v for k, v in ckpt["metrics"].items() if k not in ("steps",)},
            "card": f"cards/{name}.md", "retrain": _retrain_args(cfg),
        }
        if ckpt["model_name"] == "motion_gan":
            entry["metrics"]["checkerboard"] = _checkerboard_trained_and_init(ckpt)
        entry["metrics"]["real"] = _real_metrics(ckpt)
        # the app offers a model only if it improves on doing nothing (and, when non-blind, holds up on real
        # photographs); the others stay for reproduction
        entry["offer"], entry["offer_reason"] = _offer(entry)
        models[name] = entry
        write_card(name, entry, weights_dir / "cards")
    manifest = {"version": 1, "note": "written by `python -m deblur.train --ship`; metrics are on the held-out test "
                                      "split of the built-in faces", "models": models}
    (weights_dir / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    (weights_dir / "RESULTS.md").write_text(results_table(models))
    return manifest


def results_table(models: dict) -> str:
    """Markdown table of every shipped model's held-out PSNR/SSIM next to the degraded input and classical."""
    lines = ["# Shipped models on the held-out test split", "",
             "Mean over the test faces of `builtin_faces(4000, seed=0)`, degraded and rounded to 8 bits. Classical = "
             "`deblur.restore.classical.classical_estimate` (non-blind). Δ = model minus baseline, in dB. Written by "
             "`python -m deblur.train --ship`.", "",
             "| model | degradation | strength | degraded PSNR | classical PSNR | model PSNR | Δ vs degraded | "
             "Δ vs classical | model SSIM | train min |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, e in sorted(models.items(), key=lambda kv: (kv[1]["degradation"], kv[0])):
        for s, r in e["metrics"]["test"]["by_strength"].items():
            m, d, c = r["model"]["psnr"], r["degraded"]["psnr"], r["classical"]["psnr"]
            lines.append(f"| {name} | {e['degradation']} | {s} | {d:.2f} | {c:.2f} | {m:.2f} | {m - d:+.2f} | "
                         f"{m - c:+.2f} | {r['model']['ssim']:.3f} | {e['train_seconds'] / 60:.1f} |")
    return "\n".join(lines) + "\n"


def _parse(argv=None) -> TrainConfig | None:
    p = argparse.ArgumentParser(prog="python -m deblur.train", description=__doc__.split("\n\n")[0])
    d = TrainConfig()
    p.add_argument("--model", default=d.model)
    p.add_argument("--degradation", default=d.degradation, choices=sorted(degrade.STRENGTHS))
    p.add_argument("--strengths", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                   help="strength range in pixels (default: STRENGTHS[degradation].low..high)")
    p.add_argument("--model-args", default="{}", help='JSON keyword arguments, e.g. \'{"upsample": "resize"}\'')
    p.add_argument("--name", default="")
    for key in ("minutes", "lr", "adv_weight", "jpeg", "noise"):
        p.add_argument(f"--{key.replace('_', '-')}", type=float, default=getattr(d, key))
    for key in ("max_steps", "batch", "patch", "seed", "n_faces", "face_seed", "pairs_per_face", "val_faces",
                "eval_faces", "texture"):
        p.add_argument(f"--{key.replace('_', '-')}", type=int, default=getattr(d, key))
    p.add_argument("--loss", default=d.loss, choices=("l1", "mse"))
    p.add_argument("--out", default="")
    p.add_argument("--device", default=None)
    p.add_argument("--ship", action="store_true", help="only rebuild weights/manifest.json and cards from weights/*.pt")
    a = p.parse_args(argv)
    if a.ship:
        return None
    spec = degrade.STRENGTHS[a.degradation]
    strengths = tuple(a.strengths) if a.strengths else (spec.low, spec.high)
    kw = {k: v for k, v in vars(a).items() if k not in ("strengths", "model_args", "ship")}
    return TrainConfig(strengths=strengths, model_args=json.loads(a.model_args), **kw)


def main(argv=None) -> None:
    cfg = _parse(argv)
    if cfg is None:
        manifest = ship()
        print(f"wrote weights/manifest.json with {len(manifest['models'])} models and their cards")
        return
    ckpt = train(cfg)
    m = ckpt["metrics"]
    print(f"saved {cfg.out}: {ckpt['params']:,} params, {ckpt['train_seconds']:.0f} s, {m['steps']} steps, "
          f"val PSNR {m['val_psnr']:.2f} dB (degraded {m['val_psnr_degraded']:.2f})")
    if "test" in m:
        print(json.dumps(m["test"]["mean"]))


if __name__ == "__main__":
    main()
