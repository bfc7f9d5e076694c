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

from deblur import degrade
from deblur.data import builtin_faces
from deblur.models import PatchDiscriminator, build_model, count_params
from deblur.restore import assemble_input, pick_device

__all__ = ["TrainConfig", "evaluate", "make_pairs", "psnr", "train"]

EVAL_STRENGTHS = {"gaussian": (2.0, 4.0, 6.0), "pixelate": (4.0, 8.0, 12.0), "motion": (9.0, 15.0, 21.0)}


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
    lr: float = 2e-3
    seed: int = 0
    n_faces: int = 4000
    face_seed: int = 0
    pairs_per_face: int = 1
    val_faces: int = 64
    eval_faces: int = 100
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
    return round(float(np.mean([psnr(o, c) for o, c in zip(outs, clean, strict=True)])), 3)


def make_pairs(images: np.ndarray, kind: str, strengths: tuple[float, float], rng: np.random.Generator,
               pairs_per_face: int = 1, with_classical: bool = False, fixed: float | None = None) -> dict:
    """Degrade whole faces (8-bit rounded) and optionally compute their classical estimates.

    Args:
        images: ``N x H x W x 3`` uint8 clean faces.
        kind: degradation.
        strengths: ``(low, high)``; ignored when ``fixed`` is given.
        rng: the only source of randomness.
        pairs_per_face: degraded versions per face.
        with_classical: also compute :func:`deblur.classical.classical_estimate`.
        fixed: use this strength for every image.

    Returns:
        dict with ``clean`` (uint8 index into ``images``), ``degraded`` uint8, ``classical`` float16 or None,
        ``strength`` float32.
    """
    if with_classical:
        from deblur.classical import classical_estimate
    idx = np.repeat(np.arange(len(images)), pairs_per_face)
    degraded = np.empty((len(idx),) + images.shape[1:], np.uint8)
    classical = np.empty(degraded.shape, np.float16) if with_classical else None
    strength = np.empty(len(idx), np.float32)
    for j, i in enumerate(idx):
        s = fixed if fixed is not None else degrade.random_strength(kind, rng, *strengths)
        d = degrade.quantize(degrade.degrade(images[i], kind, s))
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
        strengths: strengths to test (default :data:`EVAL_STRENGTHS`).

    Returns:
        ``{"by_strength": {"4": {"degraded": {"psnr", "ssim"}, "classical": ..., "model": ...}}, "mean": ...}``.
    """
    from skimage.metrics import structural_similarity

    from deblur.classical import classical_estimate

    strengths = strengths or EVAL_STRENGTHS[kind]
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


def _model_fn(model, kind, device, batch=16):
    """Wrap a model as ``(degraded batch, strength) -> restored`` for :func:`evaluate`."""
    from deblur.classical import classical_estimate
    from deblur.restore import _pad_to_multiple

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


def _describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu: {platform.machine()} {platform.processor()}, {torch.get_num_threads()} threads".replace("  ", " ")


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
    model = build_model(cfg.model, **cfg.model_args).to(device)
    kind = cfg.degradation
    with_cls = bool(getattr(model, "uses_classical", False))
    train_imgs = faces.subset("train").images
    val_imgs = faces.subset("val").images[: cfg.val_faces]
    t0 = time.time()
    pairs = make_pairs(train_imgs, kind, cfg.strengths, rng, cfg.pairs_per_face, with_cls)
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
        opt.step()
        if disc is not None:
            pr, pf = disc(deg, clean), disc(deg, out.detach())
            loss_d = 0.5 * (F.mse_loss(pr, torch.ones_like(pr)) + F.mse_loss(pf, torch.zeros_like(pf)))
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
        ema = float(loss) if ema is None else 0.98 * ema + 0.02 * float(loss)
        step += 1
        if step % 20 == 0:
            bar.n = min(int(time.time() - t_train), int(budget))
            bar.set_postfix(step=step, loss=f"{ema:.4f}")
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
    ckpt = {
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "model_name": cfg.model, "model_args": dict(cfg.model_args), "name": cfg.name,
        "degradation": kind, "strengths": list(cfg.strengths),
        "train_config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
        "metrics": metrics, "train_seconds": round(train_seconds, 1),
        "total_seconds": round(time.time() - t_start, 1), "params": count_params(model),
        "device": _describe(device),
        "data": {"source": "builtin_faces", "n_faces": cfg.n_faces, "face_seed": cfg.face_seed,
                 "train_faces": len(train_imgs), "pairs_per_face": cfg.pairs_per_face, "patch": cfg.patch,
                 "quantized": True, "meta": {k: v for k, v in faces.meta.items() if isinstance(v, (str, int, float))}},
        "torch": torch.__version__,
    }
    Path(cfg.out).parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, cfg.out)
    return ckpt


def _parse(argv=None) -> TrainConfig:
    p = argparse.ArgumentParser(prog="python -m deblur.train", description=__doc__.split("\n\n")[0])
    d = TrainConfig()
    p.add_argument("--model", default=d.model)
    p.add_argument("--degradation", default=d.degradation, choices=sorted(degrade.STRENGTHS))
    p.add_argument("--strengths", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                   help="strength range in pixels (default: STRENGTHS[degradation].low..high)")
    p.add_argument("--model-args", default="{}", help='JSON keyword arguments, e.g. \'{"upsample": "resize"}\'')
    p.add_argument("--name", default="")
    for key in ("minutes", "lr", "adv_weight"):
        p.add_argument(f"--{key.replace('_', '-')}", type=float, default=getattr(d, key))
    for key in ("max_steps", "batch", "patch", "seed", "n_faces", "face_seed", "pairs_per_face", "val_faces",
                "eval_faces"):
        p.add_argument(f"--{key.replace('_', '-')}", type=int, default=getattr(d, key))
    p.add_argument("--loss", default=d.loss, choices=("l1", "mse"))
    p.add_argument("--out", default="")
    p.add_argument("--device", default=None)
    a = p.parse_args(argv)
    spec = degrade.STRENGTHS[a.degradation]
    strengths = tuple(a.strengths) if a.strengths else (spec.low, spec.high)
    kw = {k: v for k, v in vars(a).items() if k not in ("strengths", "model_args")}
    return TrainConfig(strengths=strengths, model_args=json.loads(a.model_args), **kw)


def main(argv=None) -> None:
    cfg = _parse(argv)
    ckpt = train(cfg)
    m = ckpt["metrics"]
    print(f"saved {cfg.out}: {ckpt['params']:,} params, {ckpt['train_seconds']:.0f} s, {m['steps']} steps, "
          f"val PSNR {m['val_psnr']:.2f} dB (degraded {m['val_psnr_degraded']:.2f})")
    if "test" in m:
        print(json.dumps(m["test"]["mean"]))


if __name__ == "__main__":
    main()
