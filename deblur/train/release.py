"""Release: model cards, ``weights/manifest.json`` and ``weights/RESULTS.md`` from the shipped checkpoints
(restorers in ``weights/*.pt``, learned attackers in ``weights/attackers/*.pt``)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from deblur.models import build_model
from deblur.restore import load_checkpoint, sha256_file
from deblur.train.heldout import checkerboard_trained_and_init, real_metrics

__all__ = ["LABELS", "SUMMARIES", "attacker_entries", "results_table", "ship", "write_attacker_card",
           "write_card"]


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
    """Card lines: PSNR on the held-out real photographs next to the classical baseline.

    The numbers come from :func:`deblur.train.heldout.real_metrics`.
    """
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
        with open(sweep_csv) as f:
            sweep = list(csv.DictReader(f))
        extra += ["", "## Figure C sweep (`python -m deblur.train.sweep`, `weights/sweep/`)", "",
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
        *_file_lines(entry),
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
        + (f" Faces: {entry['data']['subset']}." if entry["data"].get("subset") else "")
        + (f" Selection: {entry['data']['selection']}." if entry["data"].get("selection") else ""), "",
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
    return _save_card(name, text, cards_dir)


def _file_fields(path: Path, file: str, ckpt: dict) -> dict:
    """The manifest fields of a checkpoint file: its name under ``weights/``, sha256, size and architecture."""
    return {"file": file, "sha256": sha256_file(path), "size_bytes": path.stat().st_size,
            "model": ckpt["model_name"], "model_args": ckpt["model_args"]}


def _file_lines(entry: dict) -> list[str]:
    """Card lines: the weights file (size, sha256) and the architecture of a manifest entry."""
    return [f"- weights: `weights/{entry['file']}` ({entry['size_bytes'] / 1e6:.1f} MB, "
            f"sha256 `{entry['sha256'][:16]}…`)",
            f"- architecture: `{entry['model']}` {json.dumps(entry['model_args'])}, {entry['params']:,} parameters"]


def _save_card(name: str, text: str, cards_dir: str | Path) -> Path:
    path = Path(cards_dir) / f"{name}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def write_attacker_card(name: str, entry: dict, cards_dir: str | Path) -> Path:
    """``cards_dir/<name>.md``: what the learned attacker is, how it was trained, how well it identifies."""
    m = entry["metrics"]["test"]
    rows = ["| obscuring | strength (px of the 128-px crop) | rank-1 identification | genuine distance | "
            "impostor distance |", "|---|---|---|---|---|"]
    for point, r in m["by_point"].items():
        kind, s = point.split(":")
        rows.append(f"| {kind} | {s} | {r['rank1']:.0%} | {r['genuine_distance']:.3f} | {r['impostor_distance']:.3f} |")
    cfg = entry["train_config"]
    text = "\n".join([
        f"# Model card: `{name}` (learned attacker)", "",
        f"A small MLP that maps an obscured face ({entry['model_args']['size']}-px thumbnail of the 128-px crop, "
        "told the obscuring kind and strength) to the dlib "
        "embedding of the clean face — the *learned* attacker of \"Is this blur safe?\" (`audit.safety.attackers`). It "
        "never restores the face; its prediction is matched against clean photos. After Hao et al. 2020 "
        "(arXiv 1905.05243: a recogniser trained on blurred faces keeps ~82 % identification where one trained "
        "on clear faces falls to 1–3 %) and McPherson, Shokri & Shmatikov 2016 (arXiv 1609.00408: 71 % top-1 on "
        "pixelated FaceScrub).", "",
        *_file_lines(entry),
        f"- targets: `{entry['embedder']}` embeddings of the clean faces",
        f"- obscuring it knows: {', '.join(f'{k} {lo:g}–{hi:g}' for k, (lo, hi) in entry['strengths'].items())} px",
        f"- data: {entry['data']['train_faces']} built-in *train* faces × {entry['data']['views_per_face']} "
        "obscured views (half re-captured first: shift, scale, rotation, lighting, JPEG), 8-bit rounded",
        f"- trained: {entry['train_seconds'] / 60:.1f} min, {entry['steps']} steps on {entry['device']} of a CPU "
        "shared with other jobs "
        f"(`python -m deblur.train --model id_regressor --minutes {cfg['minutes']:g} "
        f"--train-faces {cfg['train_faces']}`)",
        "", "## Identification on held-out faces", "",
        f"{m['faces']} built-in *test* faces, each re-captured, then obscured; rank-1 = the prediction is "
        f"nearest to the face's own clean embedding among all {m['faces']} (chance {m['chance_rank1']:.0%}).", "",
        *rows, "",
        "## Limits", "",
        "Trained in minutes on a CPU on synthetic faces: a real attacker trains far longer on millions of real "
        "photos, so this is a *lower bound* on what a learned attacker does. It is told the obscuring kind and "
        "strength (as the restore attacker is); it does not know solid fill.", ""])
    return _save_card(name, text, cards_dir)


def attacker_entries(weights_dir: str | Path) -> dict:
    """Manifest entries (and cards) of the learned attackers in ``weights_dir/attackers/*.pt``."""
    weights_dir = Path(weights_dir)
    out = {}
    for path in sorted((weights_dir / "attackers").glob("*.pt")):
        ckpt = load_checkpoint(path)
        name = ckpt["name"]
        entry = {**_file_fields(path, f"attackers/{path.name}", ckpt), "task": "attacker",
                 "embedder": ckpt["embedder"], "kinds": ckpt["kinds"], "strengths": ckpt["strengths"],
                 "params": ckpt["params"], "data": ckpt["data"], "train_seconds": ckpt["train_seconds"],
                 "steps": ckpt["metrics"]["steps"], "device": ckpt["device"], "train_config": ckpt["train_config"],
                 "metrics": ckpt["metrics"], "card": f"cards/{name}.md"}
        write_attacker_card(name, entry, weights_dir / "cards")
        out[name] = entry
    return out


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


def ship(weights_dir: str | Path = "weights") -> dict:
    """Rebuild ``weights_dir/manifest.json`` and the model cards from the ``*.pt`` files there."""
    weights_dir = Path(weights_dir)
    models = {}
    for path in sorted(weights_dir.glob("*.pt")):
        ckpt = load_checkpoint(path)
        name = ckpt.get("name") or path.stem
        cfg = ckpt["train_config"]
        model = build_model(ckpt["model_name"], **ckpt["model_args"])
        entry = {
            **_file_fields(path, path.name, ckpt),
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
            entry["metrics"]["checkerboard"] = checkerboard_trained_and_init(ckpt)
        entry["metrics"]["real"] = real_metrics(ckpt)
        # the app offers a model only if it improves on doing nothing (and, when non-blind, holds up on real
        # photographs); the others stay for reproduction
        entry["offer"], entry["offer_reason"] = _offer(entry)
        models[name] = entry
        write_card(name, entry, weights_dir / "cards")
    manifest = {"version": 1, "note": "written by `python -m deblur.train --ship`; metrics are on the held-out test "
                                      "split of the built-in faces", "models": models,
                "attackers": attacker_entries(weights_dir)}
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
