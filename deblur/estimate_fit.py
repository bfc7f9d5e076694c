"""Train and evaluate the blind estimator's network: ``python -m deblur.estimate_fit``.

Training data (``--n`` images, half generated faces of the built-in train split, half random crops of
scikit-image's training photographs, :func:`deblur.texture.texture_patches`): each clean 128-px image is
degraded by a random kind at a random strength (Gaussian σ 0–8, block 2–16, motion length 3–31), then, as a
photo on the web would be, optionally resized (×0.6–1.6, the label scales with it), given sensor noise and
re-encoded as JPEG (quality 40–95), and rounded to 8 bits. :func:`deblur.estimate.features` of the result
feed a 2-hidden-layer MLP (torch, CPU, a minute) trained with cross-entropy on the kind and a Gaussian
negative log-likelihood on ``log(1 + strength)`` of the true kind. The weights go to
``weights/estimator/estimator.npz`` (numpy arrays, no pickle) with ``estimator.json`` (sha256, training
record) and the model card ``weights/estimator/CARD.md``.

Evaluation (``--eval-only`` to skip training): held-out built-in test faces, the real faces of
:func:`deblur.texture.real_face_crops` and tiles of the held-out natural photographs, each degraded at fixed
strengths and passed through four "what happened after the blur" conditions; kind accuracy and strength
MAE per source, condition and kind go to ``results/estimate/``.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from deblur import degrade, texture
from deblur.data import builtin_faces
from deblur.estimate import KINDS, MODEL_PATH, _decode, _sha256, estimate, features, load_estimator
from deblur.strengths import ESTIMATE_GRID

__all__ = ["CONDITIONS", "EVAL_STRENGTHS", "eval_sources", "evaluate_estimator", "evaluate_image", "fit",
           "make_training_set", "post_process", "save", "summarise", "write_results"]

TRAIN_RANGES = {"gaussian": (0.0, 8.0), "pixelate": (2, 16), "motion": (3, 31)}
EVAL_STRENGTHS = ESTIMATE_GRID  # one strengths table: deblur.strengths
# what happens to a blurred photo before it reaches us: (name, resize factor, JPEG quality or None)
CONDITIONS = (("png", 1.0, None), ("jpeg q75", 1.0, 75), ("resize x0.75 + jpeg q90", 0.75, 90),
              ("resize x1.5", 1.5, None))


def post_process(img: np.ndarray, factor: float, quality: int | None, rng: np.random.Generator | None = None,
                 noise: float = 0.0, size: int | None = 128) -> np.ndarray:
    """Resize by ``factor`` (then centre-or-random crop to ``size`` if larger), add noise, JPEG, round to 8 bits."""
    out = texture.resize(img, factor) if factor != 1.0 else img
    h, w = out.shape[:2]
    if size is not None and (h > size or w > size):
        y = (h - size) // 2 if rng is None else int(rng.integers(0, h - size + 1))
        x = (w - size) // 2 if rng is None else int(rng.integers(0, w - size + 1))
        out = out[y:y + size, x:x + size]
    if noise > 0:
        out = texture.sensor_noise(out, rng, noise)
    if quality is not None:
        out = texture.jpeg(out, quality)
    return degrade.quantize(out)


def _random_sample(clean: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, int, float]:
    k = int(rng.integers(0, 3))
    kind = KINDS[k]
    lo, hi = TRAIN_RANGES[kind]
    s = float(rng.uniform(lo, hi)) if kind == "gaussian" else float(rng.integers(lo, hi + 1))
    factor = 1.0
    if rng.random() < 0.5:
        for _ in range(10):  # a resize must leave a visible degradation: blocks >= 2.5 px, motion >= 2 px
            factor = float(np.exp(rng.uniform(np.log(0.6), np.log(1.6))))
            if kind == "gaussian" or s * factor >= (2.5 if kind == "pixelate" else 2.0):
                break
        else:
            factor = 1.0
    noise = float(rng.uniform(0.002, 0.015)) if rng.random() < 0.25 else 0.0
    quality = int(rng.integers(40, 96)) if rng.random() < 0.5 else None
    img = post_process(degrade.degrade(clean, kind, s), factor, quality, rng, noise)
    return img, k, s * factor


def make_training_set(n: int, seed=0, faces: np.ndarray | None = None) -> dict:
    """Features, kind index and strength of ``n`` random degraded images (see the module docstring).

    Args:
        n: images; half crops of the training photographs, half faces.
        seed: seed (or seed sequence) of the only random generator.
        faces: ``N x 128 x 128 x 3`` uint8 clean faces (default: the built-in train split).
    """
    rng = np.random.default_rng(seed)
    faces = builtin_faces(4000, seed=0).subset("train").images if faces is None else faces
    n_tex = n // 2
    sources = np.concatenate([texture.texture_patches(n_tex, 128, rng),
                              faces[rng.integers(0, len(faces), n - n_tex)]])
    xs, kinds, strengths, source = [], [], [], []
    for i, clean in enumerate(sources):
        img, k, s = _random_sample(clean, rng)
        xs.append(features(img))
        kinds.append(k)
        strengths.append(s)
        source.append("texture" if i < n_tex else "face")
    return {"x": np.stack(xs), "kind": np.array(kinds), "strength": np.array(strengths, np.float32),
            "source": np.array(source)}


def fit(data: dict, hidden: int = 128, epochs: int = 300, seed: int = 0) -> tuple[dict, dict]:
    """Train the MLP on ``data``; returns (numpy arrays for the ``.npz``, training record)."""
    torch.manual_seed(seed)
    x = torch.from_numpy(data["x"].astype(np.float32))
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    kind = torch.from_numpy(data["kind"]).long()
    target = torch.log1p(torch.from_numpy(data["strength"]))
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_val = max(1, len(x) // 10)
    val, tr = perm[:n_val], perm[n_val:]  # the same rows as _val_rows(len(x), seed)
    net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, hidden),
                              torch.nn.ReLU(), torch.nn.Linear(hidden, 9))
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    xn = (x - mean) / std

    def loss_fn(idx):
        out = net(xn[idx])
        ce = torch.nn.functional.cross_entropy(out[:, :3], kind[idx])
        rows = torch.arange(len(idx))
        mu, logvar = out[rows, 3 + kind[idx]], out[rows, 6 + kind[idx]].clamp(-12, 6)
        nll = 0.5 * (logvar + (target[idx] - mu) ** 2 / logvar.exp()).mean()
        return ce + nll, ce, nll

    t0 = time.time()
    for _ in range(epochs):
        net.train()
        for b in tr[torch.randperm(len(tr))].split(256):
            loss, _, _ = loss_fn(b)
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    net.eval()
    with torch.no_grad():
        _, ce, nll = loss_fn(val)
        out = net(xn[val]).numpy().astype(np.float64)
    prob, mu, _ = _decode(out)
    pred = prob.argmax(1)
    k_val = data["kind"][val.numpy()]
    s_val = data["strength"][val.numpy()]
    s_pred = np.expm1(mu[np.arange(len(val)), k_val])
    record = {"val_kind_accuracy": round(float((pred == k_val).mean()), 4),
              "val_strength_mae_px_given_kind": {KINDS[k]: round(float(np.abs(s_pred - s_val)[k_val == k].mean()), 3)
                                                 for k in range(3)},
              "val_ce": round(float(ce), 4), "val_nll": round(float(nll), 4), "epochs": epochs, "hidden": hidden,
              "train_samples": len(tr), "val_samples": n_val, "fit_seconds": round(time.time() - t0, 1)}
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    arrays = {"n_layers": np.array(len(linears)), "mean": mean.numpy(), "std": std.numpy()}
    for i, lin in enumerate(linears):
        arrays[f"w{i}"] = lin.weight.detach().numpy().T.copy()
        arrays[f"b{i}"] = lin.bias.detach().numpy().copy()
    arrays["sd_scale"] = np.array(calibrate(arrays, data, seed))
    record["sd_scale"] = round(float(arrays["sd_scale"]), 3)
    return arrays, record


def _val_rows(n: int, seed: int) -> np.ndarray:
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[:max(1, n // 10)].numpy()


def calibrate(arrays: dict, data: dict, seed: int = 0) -> float:
    """Scale for the predicted spread so that 68.3% of validation strengths (kind right) fall within +-1 sd.

    The NLL head is overconfident after training (its spread shrinks on the training images); one factor
    fitted on the held-out 10% (the same rows :func:`fit` holds out) makes ``uncertainty`` mean what it says.
    """
    val = _val_rows(len(data["kind"]), seed)
    h = (data["x"][val].astype(np.float64) - arrays["mean"]) / arrays["std"]
    for i in range(int(arrays["n_layers"])):
        h = h @ arrays[f"w{i}"] + arrays[f"b{i}"]
        if i < int(arrays["n_layers"]) - 1:
            h = np.maximum(h, 0.0)
    prob, mu, sd = _decode(h)
    k = data["kind"][val]
    ok = (prob.argmax(1) == k) & (k != KINDS.index("pixelate"))  # pixelation strength comes from the grid
    rows = np.flatnonzero(ok)
    z = np.abs(np.log1p(data["strength"][val][rows]) - mu[rows, k[rows]]) / sd[rows, k[rows]]
    return float(np.quantile(z, 0.683))


def save(arrays: dict, record: dict, path: Path = MODEL_PATH) -> None:
    """Write the ``.npz`` and its ``.json`` record (with sha256) and clear the loader's cache."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, meta=json.dumps({k: v for k, v in record.items() if isinstance(v, (str, int, float))}), **arrays)
    record = {**record, "sha256": _sha256(path), "file": path.name}
    path.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    load_estimator.cache_clear()


def eval_sources(n_faces: int = 40, faces: np.ndarray | None = None) -> dict[str, dict[str, np.ndarray]]:
    """The held-out images: ``{source: {name: HxWx3 float}}`` (built-in test faces, real faces, real photos)."""
    if faces is None:
        test = builtin_faces(4000, seed=0).subset("test")
        faces = {test.ids[i]: test.image(i) for i in range(min(n_faces, len(test)))}
    return {"built-in test faces": faces,
            "real faces (astronaut, grace_hopper)": texture.real_face_crops(),
            "real photos (coffee, rocket tiles)": texture.test_tiles(128, 8)}


def evaluate_image(source: str, name: str, clean: np.ndarray) -> list[dict]:
    """Rows for one clean image: every kind x strength x condition of the evaluation."""
    rows = []
    for kind, strengths in EVAL_STRENGTHS.items():
        for s in strengths:
            d = degrade.degrade(clean, kind, s)
            for cond, factor, quality in CONDITIONS:
                est = estimate(post_process(d, factor, quality))
                true = s * factor
                rows.append({"source": source, "image": name, "kind": kind, "strength": s, "condition": cond,
                             "true_strength": round(true, 3), "est_kind": est.kind,
                             "est_strength": est.strength, "uncertainty": est.uncertainty,
                             "abs_error": round(abs(est.strength - true), 3) if est.kind == kind else "",
                             "kind_ok": int(est.kind == kind),
                             "within_1sd": int(est.kind == kind and abs(est.strength - true) <= est.uncertainty)})
    return rows


def evaluate_estimator(sources: dict[str, dict[str, np.ndarray]], pool=None) -> list[dict]:
    """One row per image x kind x strength x condition; ``pool`` (a ``multiprocessing.Pool``) to parallelise."""
    jobs = [(src, name, img) for src, images in sources.items() for name, img in images.items()]
    results = pool.starmap(evaluate_image, jobs) if pool is not None else [evaluate_image(*j) for j in jobs]
    return [row for rows in results for row in rows]


def summarise(rows: list[dict]) -> list[dict]:
    """Kind accuracy and strength MAE (kind right) per source x condition x kind, and per source overall."""
    out = []
    for src in dict.fromkeys(r["source"] for r in rows):
        for cond in [c[0] for c in CONDITIONS] + ["all"]:
            for kind in list(KINDS) + ["all"]:
                sel = [r for r in rows if r["source"] == src and (cond == "all" or r["condition"] == cond)
                       and (kind == "all" or r["kind"] == kind)]
                if not sel:
                    continue
                ok = [r for r in sel if r["kind_ok"]]
                out.append({"source": src, "condition": cond, "kind": kind, "n": len(sel),
                            "kind_accuracy": round(len(ok) / len(sel), 3),
                            "strength_mae_px": round(float(np.mean([r["abs_error"] for r in ok])), 2) if ok else "",
                            "median_rel_error": round(float(np.median([r["abs_error"] / max(r["true_strength"], 1e-6)
                                                                       for r in ok])), 3) if ok else "",
                            "within_1sd": round(float(np.mean([r["within_1sd"] for r in ok])), 3) if ok else ""})
    return out


def write_results(rows: list[dict], summary: list[dict], out: Path, meta: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, data in (("per_image.csv", rows), ("summary.csv", summary)):
        with open(out / name, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(data[0]))
            w.writeheader()
            w.writerows(data)
    lines = ["# Blind estimation accuracy", "",
             "`python -m deblur.estimate_fit --eval-only` (the shipped `weights/estimator/`). Each clean image is "
             "degraded at every strength of " + ", ".join(f"{k} {'/'.join(f'{s:g}' for s in v)}"
                                                          for k, v in EVAL_STRENGTHS.items()) +
             " px, then passed through each condition (what happens to a saved photo after the blur). Strength "
             "MAE is in pixels of the image the estimator saw (a resize scales the true strength too) and counts "
             "only images whose kind was right; *within 1 sd* = true strength within the reported uncertainty.", "",
             f"Images: {meta['counts']}.", "",
             "| source | condition | kind | n | kind accuracy | strength MAE (px) | median relative error | "
             "within 1 sd |", "|---|---|---|---|---|---|---|---|"]
    for r in summary:
        lines.append(f"| {r['source']} | {r['condition']} | {r['kind']} | {r['n']} | {r['kind_accuracy']:.1%} | "
                     f"{r['strength_mae_px']} | {r['median_rel_error']} | {r['within_1sd']} |")
    cm = {}
    for r in rows:
        cm[(r["kind"], r["est_kind"])] = cm.get((r["kind"], r["est_kind"]), 0) + 1
    lines += ["", "Confusion (rows: true kind, columns: estimated; all sources and conditions):", "",
              "| true \\ estimated | " + " | ".join(KINDS) + " |", "|---|" + "---|" * len(KINDS)]
    for k in KINDS:
        lines.append(f"| {k} | " + " | ".join(str(cm.get((k, e), 0)) for e in KINDS) + " |")
    lines += ["", f"Run: {meta['seconds']:.0f} s on {meta['machine']}.", ""]
    (out / "README.md").write_text("\n".join(lines))
    (out / "run.json").write_text(json.dumps(meta, indent=1) + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m deblur.estimate_fit", description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=6000, help="training images (half faces, half photo crops)")
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-faces", type=int, default=40, help="built-in test faces in the evaluation")
    p.add_argument("--eval-only", action="store_true")
    p.add_argument("--features-cache", default="", help="npz to reuse/save the training features")
    p.add_argument("--out", default="results/estimate")
    a = p.parse_args(argv)
    if not a.eval_only:
        cache = Path(a.features_cache) if a.features_cache else None
        t0 = time.time()
        if cache and cache.is_file():
            with np.load(cache, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
        else:
            data = make_training_set(a.n, a.seed)
            if cache:
                np.savez(cache, **data)
        prep = time.time() - t0
        arrays, record = fit(data, epochs=a.epochs, seed=a.seed)
        record.update({"data_seconds": round(prep, 1), "n": int(len(data["kind"])), "seed": a.seed,
                       "machine": f"{platform.machine()} CPU, torch {torch.__version__}",
                       "data": "half builtin_faces(4000, seed=0) train split, half deblur.texture.texture_patches "
                               f"of {', '.join(texture.TRAIN_PHOTOS)}"})
        save(arrays, record)
        print(json.dumps(record, indent=1))
    t0 = time.time()
    rows = evaluate_estimator(eval_sources(a.eval_faces))
    summary = summarise(rows)
    counts = {}
    for r in rows:
        counts.setdefault(r["source"], set()).add(r["image"])
    meta = {"counts": {k: len(v) for k, v in counts.items()}, "seconds": time.time() - t0,
            "machine": f"{platform.machine()} CPU (shared 2-core machine)", "conditions": [c[0] for c in CONDITIONS],
            "strengths": EVAL_STRENGTHS,
            "model_sha256": json.loads(MODEL_PATH.with_suffix(".json").read_text())["sha256"]}
    write_results(rows, summary, Path(a.out), meta)
    print((Path(a.out) / "README.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
