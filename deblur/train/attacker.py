"""Train the *learned* attacker (:class:`deblur.models.id_regressor.IdRegressor`) on obscured built-in faces.

``python -m deblur.train --model id_regressor --minutes 8`` (or ``python -m deblur.train.attacker``).

Data: the ``train`` split of ``builtin_faces(n_faces, face_seed)``. Targets are the dlib embeddings of the
*clean* faces, computed once and cached (``cache_dir()/attacker-targets-<embedder>-s<seed>-n<n>.npz``;
~80 ms per face on one CPU core). Each face gets ``views`` obscured versions, precomputed before training:
half of them re-captured first (:func:`deblur.degrade.recapture`: the attacker must match *another* photo),
then obscured with a random kind of :data:`~deblur.models.id_regressor.KINDS` at a uniform random strength
of :data:`TRAIN_STRENGTHS`, rounded to 8 bits, area-downsampled to 64 px.

Loss: squared L2 to the clean embedding plus an in-batch identification term (softmax over ``-d²/τ`` of the
batch's targets), so that the network keeps faces apart instead of regressing to the mean face.

Checkpoint (``weights/attackers/<name>.pt``, loaded with ``weights_only=True``): ``state_dict``,
``model_name``, ``model_args``, ``name``, ``task="attacker"``, ``embedder``, ``kinds``, ``highs``,
``train_config``, ``metrics`` (rank-1 identification and mean distance on held-out test faces per kind and
strength), ``train_seconds``, ``device``, ``params``, ``data``.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from deblur import degrade
from deblur.data import builtin_faces, cache_dir
from deblur.embed import get_embedder
from deblur.models.id_regressor import KINDS, IdRegressor, condition
from deblur.restore import WEIGHTS_DIR, load_checkpoint, load_manifest, sha256_file
from deblur.train.loop import cosine_lr, save_checkpoint

# Its manifest entry and model card: deblur.train.release (attacker_entries, write_attacker_card).
__all__ = ["ATTACKER_DIR", "TRAIN_STRENGTHS", "AttackerConfig", "EmbeddingAttacker", "embedding_targets",
           "load_attacker", "obscure_for_attacker", "train_attacker"]

ATTACKER_DIR = WEIGHTS_DIR / "attackers"
# Strength range per kind the attacker is trained on (and normalises by): the safety sweep's grids.
TRAIN_STRENGTHS: dict[str, tuple[float, float]] = {"gaussian": (0.0, 12.0), "pixelate": (1.0, 16.0),
                                                     "motion": (1.0, 63.0), "pixelate_noise": (4.0, 12.0)}
EVAL_POINTS: dict[str, tuple[float, ...]] = {"gaussian": (4.0, 8.0, 12.0), "pixelate": (8.0, 12.0, 16.0),
                                             "motion": (21.0, 45.0, 63.0), "pixelate_noise": (4.0, 8.0, 12.0)}
_HIGHS = {k: v[1] for k, v in TRAIN_STRENGTHS.items()}  # what the strengths are normalised by


@dataclass
class AttackerConfig:
    """One training run of the learned attacker (stored in the checkpoint).

    Attributes:
        name: checkpoint name.
        embedder: key of :data:`deblur.embed.EMBEDDERS` whose embeddings are the targets.
        hidden, size: :class:`IdRegressor` hidden width and thumbnail side (px).
        minutes: wall-clock training budget.
        batch: faces per step.
        lr: AdamW learning rate (cosine decay over the budget).
        views: obscured versions precomputed per training face.
        nce_weight, tau: weight and temperature of the in-batch identification term.
        n_faces, face_seed: the built-in face set (its ``train`` split is used).
        train_faces: the first this many faces of the train split (each costs one dlib embedding once).
        eval_faces: held-out test faces for the final metrics.
        seed: seeds numpy and torch.
        out: checkpoint path.
    """

    name: str = "id_regressor-dlib"
    embedder: str = "dlib"
    hidden: int = 512
    size: int = 16
    minutes: float = 8.0
    batch: int = 256
    lr: float = 1e-3
    views: int = 4
    nce_weight: float = 0.1
    tau: float = 0.05
    n_faces: int = 4000
    face_seed: int = 0
    train_faces: int = 1200
    eval_faces: int = 100
    seed: int = 0
    out: str = ""

    def __post_init__(self):
        self.out = self.out or str(ATTACKER_DIR / f"{self.name}.pt")


def obscure_for_attacker(img: np.ndarray, kind: str, strength: float, seed: int = 0) -> np.ndarray:
    """Obscure a 128-px crop like the safety sweep does (8-bit rounded); ``pixelate_noise`` seeded by ``seed``."""
    if kind == "pixelate_noise":
        out = degrade.pixelate_noise(img, int(strength), np.random.default_rng([seed, int(strength)]))
    else:
        out = degrade.degrade(img, kind, strength)
    return degrade.quantize(out)


def _to_input(img: np.ndarray, size: int) -> np.ndarray:
    """``HxWx3`` float image -> ``size x size x 3`` float32 (area downsampling)."""
    return cv2.resize(degrade.as_image(img), (size, size), interpolation=cv2.INTER_AREA)


def embedding_targets(faces, embedder_key: str = "dlib", tag: str = "") -> np.ndarray:
    """Clean embeddings of every face of ``faces`` (cached; NaN rows where the embedder finds no face)."""
    embedder = get_embedder(embedder_key)
    path = cache_dir() / f"attacker-targets-{embedder.name}-{tag}-n{len(faces)}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            cached = z["embeddings"] if list(z["ids"]) == list(faces.ids) else None
        # the embedder's crop geometry may change under the same name: re-embed one face to be sure
        probe = embedder.embed(faces.image(0))
        if cached is not None and probe is not None and np.allclose(cached[0], probe, atol=1e-5):
            return cached
    out = np.full((len(faces), embedder.dim), np.nan)
    for i in range(len(faces)):
        e = embedder.embed(faces.image(i))
        if e is not None:
            out[i] = e
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, ids=np.array(faces.ids), embeddings=out)
    tmp.replace(path)
    return out


def _views(images: np.ndarray, views: int, rng: np.random.Generator, size: int
           ) -> tuple[np.ndarray, list[str], np.ndarray]:
    """``views`` obscured, ``size``-px versions per face (half of them re-captured first)."""
    n = len(images) * views
    x = np.empty((n, size, size, 3), np.uint8)
    kinds, strengths = [], np.empty(n, np.float32)
    for j in range(n):
        face = images[j // views].astype(np.float32) / 255.0
        if rng.random() < 0.5:
            face = degrade.recapture(face, rng)
        kind = KINDS[int(rng.integers(len(KINDS)))]
        lo, hi = TRAIN_STRENGTHS[kind]
        s = float(rng.uniform(lo, hi)) if kind == "gaussian" else float(rng.integers(int(lo), int(hi) + 1))
        x[j] = degrade.to_uint8(_to_input(obscure_for_attacker(face, kind, s, seed=int(rng.integers(1 << 30))), size))
        kinds.append(kind)
        strengths[j] = s
    return x, kinds, strengths


def _tensor(x_u8: np.ndarray, kinds: list[str], strengths, highs: dict[str, float] = _HIGHS) -> torch.Tensor:
    """``N x size x size x 3`` uint8 thumbnails, their kinds and strengths -> the :class:`IdRegressor` input."""
    imgs = torch.from_numpy(x_u8.astype(np.float32) / 255.0).permute(0, 3, 1, 2)
    return condition(imgs, kinds, torch.from_numpy(np.asarray(strengths, np.float32)), highs)


def _first(faces, n: int):
    """The first ``n`` faces of a :class:`deblur.data.FaceSet`."""
    return type(faces)(faces.images[:n], faces.ids[:n], faces.split[:n], faces.meta)


class EmbeddingAttacker:
    """A trained :class:`IdRegressor` behind one call: obscured crops -> predicted clean embeddings.

    Args:
        path: checkpoint written by :func:`train_attacker`.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        ckpt = load_checkpoint(self.path)
        if ckpt.get("task") != "attacker":
            raise ValueError(f"{self.path} is not a learned-attacker checkpoint (task={ckpt.get('task')!r}); "
                             "train one with `python -m deblur.train --model id_regressor`")
        self.model = IdRegressor(**ckpt["model_args"])
        self.model.load_state_dict(ckpt["state_dict"])
        self.model.eval()
        self.name = ckpt["name"]
        self.embedder = ckpt["embedder"]
        self.kinds = tuple(ckpt["kinds"])
        self.highs = {k: float(v) for k, v in ckpt["highs"].items()}
        self.meta = {k: v for k, v in ckpt.items() if k != "state_dict"}

    def predict(self, crops: list[np.ndarray], kind: str, strengths: list[float]) -> np.ndarray:
        """Predicted clean embeddings (``N x 128``) of obscured 128-px crops, told ``kind`` and each strength."""
        if kind not in self.kinds:
            raise ValueError(f"the learned attacker {self.name} knows {list(self.kinds)}, not {kind!r}")
        x = np.stack([degrade.to_uint8(_to_input(c, self.model.size)) for c in crops])
        t = _tensor(x, [kind] * len(crops), strengths, self.highs)
        with torch.inference_mode():
            return self.model(t).double().numpy()


def load_attacker(name: str = "id_regressor-dlib", weights_dir: str | Path | None = None) -> EmbeddingAttacker:
    """The shipped learned attacker ``name`` (its sha256 checked against ``weights/manifest.json``).

    Raises:
        FileNotFoundError / ValueError: missing, tampered or foreign checkpoint, with the retrain command.
    """
    weights_dir = Path(weights_dir or WEIGHTS_DIR)
    entry = load_manifest(weights_dir).get("attackers", {}).get(name)
    if entry is None:
        raise FileNotFoundError(f"no learned attacker {name!r} in {weights_dir / 'manifest.json'}; train it with "
                                "`python -m deblur.train --model id_regressor` and ship it (--ship)")
    path = weights_dir / entry["file"]
    if not path.is_file() or sha256_file(path) != entry["sha256"]:
        raise ValueError(f"weights file {path} is missing or does not match the sha256 in the manifest; retrain "
                         "with `python -m deblur.train --model id_regressor` or restore it from git")
    return _verified_attacker(str(path.resolve()), entry["sha256"])


@functools.lru_cache(maxsize=4)
def _verified_attacker(path: str, sha256: str) -> EmbeddingAttacker:
    """One instance per verified file and hash in this process (a changed file has another hash: loaded anew)."""
    return EmbeddingAttacker(path)


def _evaluate(model: IdRegressor, faces, targets: np.ndarray, seed: int) -> dict:
    """Rank-1 identification among the held-out faces' clean embeddings, and mean distance, per kind and strength."""
    ok = ~np.isnan(targets).any(axis=1)
    imgs, tg = faces.images[ok], targets[ok]
    rng = np.random.default_rng([seed, 99])
    model.eval()
    out: dict = {}
    for kind, points in EVAL_POINTS.items():
        for s in points:
            x = np.stack([degrade.to_uint8(_to_input(obscure_for_attacker(degrade.recapture(f / 255.0, rng), kind, s,
                                                                          seed=i), model.size))
                          for i, f in enumerate(imgs)])
            with torch.inference_mode():
                pred = model(_tensor(x, [kind] * len(x), np.full(len(x), s))).double().numpy()
            d = np.linalg.norm(pred[:, None, :] - tg[None, :, :], axis=2)
            out[f"{kind}:{s:g}"] = {"rank1": round(float(np.mean(d.argmin(axis=1) == np.arange(len(tg)))), 4),
                                    "genuine_distance": round(float(np.mean(np.diag(d))), 4),
                                    "impostor_distance": round(float(d[~np.eye(len(tg), dtype=bool)].mean()), 4)}
    return {"faces": int(len(tg)), "chance_rank1": round(1.0 / len(tg), 4), "by_point": out}


def train_attacker(cfg: AttackerConfig, progress: bool = True) -> dict:
    """Train, evaluate on held-out test faces and save the checkpoint to ``cfg.out``; returns it."""
    t_start = time.time()
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(1)  # on a shared, oversubscribed CPU a second thread only adds barrier waits
    faces = builtin_faces(cfg.n_faces, seed=cfg.face_seed)
    train = _first(faces.subset("train"), cfg.train_faces)
    targets = embedding_targets(train, cfg.embedder, tag=f"s{cfg.face_seed}-train")
    keep = ~np.isnan(targets).any(axis=1)
    images, targets = train.images[keep], targets[keep].astype(np.float32)
    strengths_hash = hashlib.sha256(json.dumps(TRAIN_STRENGTHS, sort_keys=True).encode()).hexdigest()[:8]
    views_path = cache_dir() / (f"attacker-views-s{cfg.seed}-f{cfg.face_seed}-n{len(images)}-v{cfg.views}-"
                                f"px{cfg.size}-{strengths_hash}.npz")
    if views_path.is_file():  # the obscured views are the slow part of preparing a run: made once per setting
        with np.load(views_path, allow_pickle=False) as z:
            x, kinds, strengths = z["x"], [str(k) for k in z["kinds"]], z["strengths"]
    else:
        x, kinds, strengths = _views(images, cfg.views, rng, cfg.size)
        views_path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(views_path.with_suffix(".tmp.npz"), x=x, kinds=np.array(kinds), strengths=strengths)
        views_path.with_suffix(".tmp.npz").replace(views_path)
    face_of = np.repeat(np.arange(len(images)), cfg.views)
    prep_seconds = time.time() - t_start

    model = IdRegressor(size=cfg.size, hidden=cfg.hidden)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    budget, step, t0, ema = cfg.minutes * 60.0, 0, time.time(), None
    while time.time() - t0 < budget:
        frac = (time.time() - t0) / budget
        for g in opt.param_groups:
            g["lr"] = cosine_lr(cfg.lr, step, frac, warmup=50)
        model.train()
        rows = rng.choice(len(x), cfg.batch, replace=False)
        rows = rows[np.unique(face_of[rows], return_index=True)[1]]  # one view per face: clean in-batch negatives
        pred = model(_tensor(x[rows], [kinds[r] for r in rows], strengths[rows]))
        tgt = torch.from_numpy(targets[face_of[rows]])
        d2 = torch.cdist(pred, tgt).square()
        loss = d2.diagonal().mean() + cfg.nce_weight * F.cross_entropy(-d2 / cfg.tau, torch.arange(len(rows)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        step += 1
        if progress and step % 50 == 0:
            print(f"step {step} {time.time() - t0:.0f}s loss {ema:.4f}", flush=True)
    train_seconds = time.time() - t0

    test = _first(faces.subset("test"), cfg.eval_faces)
    metrics = {"steps": step, "final_loss": round(float(ema), 5), "prep_seconds": round(prep_seconds, 1),
               "test": _evaluate(model, test, embedding_targets(test, cfg.embedder, tag=f"s{cfg.face_seed}-test"),
                                 cfg.seed)}
    meta = {"model_name": "id_regressor", "model_args": {"size": cfg.size, "hidden": cfg.hidden}, "name": cfg.name,
            "task": "attacker", "embedder": get_embedder(cfg.embedder).name, "kinds": list(KINDS),
            "highs": dict(_HIGHS), "strengths": {k: list(v) for k, v in TRAIN_STRENGTHS.items()},
            "train_config": asdict(cfg), "metrics": metrics, "train_seconds": round(train_seconds, 1),
            "total_seconds": round(time.time() - t_start, 1),
            "device": f"cpu: {platform.machine()}, {torch.get_num_threads()} threads",
            "params": sum(p.numel() for p in model.parameters()),
            "data": {"source": "builtin_faces", "n_faces": cfg.n_faces, "face_seed": cfg.face_seed,
                     "train_faces": int(len(images)), "views_per_face": cfg.views, "recaptured_fraction": 0.5,
                     "input_px": cfg.size, "quantized": True}, "torch": str(torch.__version__)}
    return save_checkpoint(model, meta, cfg.out)


def build_parser() -> argparse.ArgumentParser:
    """Arguments of the learned-attacker run (also reached through ``python -m deblur.train --model id_regressor``)."""
    p = argparse.ArgumentParser(prog="python -m deblur.train --model id_regressor",
                                description=__doc__.split("\n\n")[0])
    d = AttackerConfig()
    for key, value in asdict(d).items():
        p.add_argument(f"--{key.replace('_', '-')}", type=type(value), default=value)
    return p


def main(argv=None) -> None:
    cfg = AttackerConfig(**vars(build_parser().parse_args(argv)))
    ckpt = train_attacker(cfg)
    print(f"saved {cfg.out}: {ckpt['params']:,} params, {ckpt['train_seconds']:.0f} s, "
          f"{ckpt['metrics']['steps']} steps")
    print(json.dumps(ckpt["metrics"]["test"], indent=1))


if __name__ == "__main__":
    main()
