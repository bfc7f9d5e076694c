"""Evaluation table: every restorer x degradation x strength on the held-out built-in test split.

For each degradation and strength the clean test faces are degraded, rounded to 8 bits
(:func:`deblur.degrade.quantize`, as a saved photo is) and restored by every restorer that
:func:`deblur.restore.restorers_for` offers (learned models from ``weights/manifest.json``, the classical
baselines, and ``"none"`` = the degraded input itself). Each row reports mean PSNR, SSIM, LPIPS (only if
it runs offline) and identity distance to the clean face (dlib 128-d embedding, L2; lower = closer to the
same identity), next to the degraded input's own numbers, plus the PSNR gain over the degraded input and
over the best classical baseline of the same setting.

Usage::

    python -m deblur.train.evaluate --out results/eval --n 200
    python -m deblur.train.evaluate --out /tmp/ev --n 4 --strengths gaussian=3 pixelate=8 motion=15
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import platform
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from deblur.blind import with_estimated
from deblur.data import builtin_faces
from deblur.degrade import degrade, quantize
from deblur.embed import get_embedder
from deblur.metrics import lpips_or_none, psnr, ssim
from deblur.restore import close_restorers, external_restorers, restorers_for
from deblur.restore.external.spec import DEFAULT_CONCURRENCY
from deblur.strengths import EVAL_GRID, STRENGTHS, parse_strengths
from deblur.texture import folder_faces, real_split

__all__ = ["COLUMNS", "evaluate", "main", "write_markdown"]

COLUMNS = [
    "degradation", "strength", "restorer", "family", "uses_strength", "n",
    "psnr", "psnr_ci95", "ssim", "lpips", "id_l2", "id_n",
    "psnr_gain_vs_degraded", "psnr_gain_vs_best_classical", "ssim_gain_vs_degraded", "id_l2_change_vs_degraded",
    "ms_per_face", "embedder", "n_failed", "failures", "strength_given", "kind_misses",
]


def _embedder(name: str):
    """``(embedder, note)`` from :func:`deblur.embed.get_embedder` (the audit's embedders, one code path)."""
    return get_embedder(name), f"identity: deblur.embed.get_embedder({name!r})"


def _restorers(kind: str, weights_dir: str | None):
    """``(restorers, note)`` from :func:`deblur.restore.restorers_for` (learned + classical + none)."""
    kwargs = {} if weights_dir is None else {"weights_dir": weights_dir}
    return restorers_for(kind, **kwargs), "restorers: deblur.restore.restorers_for"


def _mean(values: list[float]) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def evaluate(clean: np.ndarray, strengths: dict[str, tuple[float, ...]], weights_dir: str | None = None,
             identity: bool = True, embedder_name: str = "dlib", log=print,
             reuse: dict[tuple[str, float, str], dict] | None = None,
             extra: dict[str, dict] | None = None, estimated: bool = True) -> tuple[list[dict], list[str]]:
    """Score every restorer on ``clean`` faces for every degradation and strength.

    Args:
        clean: ``N x H x W x 3`` float32 clean faces.
        strengths: degradation -> strengths to evaluate.
        weights_dir: where ``restorers_for`` looks for learned models (None = its default).
        identity: also compute identity distances (dlib, ~80 ms per image).
        embedder_name: embedder for :func:`deblur.embed.get_embedder`.
        log: progress printer.
        reuse: rows of an earlier run keyed by ``(degradation, strength, restorer)``, used instead of
            recomputing (only pass deterministic restorers: classical and ``none``).
        extra: more restorers per kind, e.g. :func:`deblur.restore.external_restorers`; a failed external
            call leaves its face out of that row's means and is counted in ``n_failed``/``failures``.
        estimated: also run every non-blind restorer told the blind estimator's strength instead of the true
            one (:class:`deblur.blind.EstimatedStrength`, rows ``<name> (estimated strength)``).

    Returns:
        ``(rows, notes)``: one dict per restorer x setting with :data:`COLUMNS`, and notes on what ran.
    """
    notes: list[str] = []
    lpips_fn = lpips_or_none()
    notes.append("lpips: available" if lpips_fn else "lpips: not available offline (package or backbone missing)")
    reuse = reuse or {}
    embedder, clean_emb = None, []
    if identity:
        embedder, note = _embedder(embedder_name)
        notes.append(note)
        clean_emb = [embedder.embed(x) for x in clean]
        notes.append(f"identity: {sum(e is None for e in clean_emb)} of {len(clean)} clean faces not embeddable")
    rows, reused = _evaluate_all(clean, strengths, weights_dir, notes, lpips_fn, reuse, embedder, clean_emb,
                                 extra or {}, log, estimated)
    if estimated:
        notes.append("estimated strength: the non-blind restorer is told deblur.estimate's per-image estimate; "
                     "an image whose kind is misjudged goes to the classical restorer of the estimated kind "
                     "(kind_misses counts them)")
    if reused:
        notes.append(f"{reused} classical/none rows reused from the previous run in the same folder (deterministic)")
    return rows, notes


def _evaluate_all(clean, strengths, weights_dir, notes, lpips_fn, reuse, embedder, clean_emb, outside, log,
                  estimated=False):
    rows: list[dict] = []
    reused = 0
    for kind, values in strengths.items():
        restorers, note = _restorers(kind, weights_dir)
        restorers = {**restorers, **outside.get(kind, {})}
        if estimated:
            restorers = {**restorers, **with_estimated(restorers, kind)}
        if note not in notes:
            notes.append(note)
        for strength in values:
            degraded = np.stack([quantize(degrade(x, kind, strength)) for x in clean])
            block: list[dict] = []
            for name, restorer in restorers.items():
                if (kind, float(strength), name) in reuse:
                    block.append(dict(reuse[(kind, float(strength), name)]))
                    reused += 1
                    continue
                t0 = time.perf_counter()
                misses0 = getattr(restorer, "kind_misses", 0)
                given = [strength] * len(degraded) if restorer.uses_strength else None
                if hasattr(restorer, "restore_outcomes"):  # external: concurrent, failures counted per face
                    outcomes = restorer.restore_outcomes(list(degraded), given)
                    keep = [i for i, o in enumerate(outcomes) if o.ok]
                    failed = Counter(o.status for o in outcomes if not o.ok)
                    out = np.array([outcomes[i].image for i in keep], np.float32)
                else:
                    keep, failed = list(range(len(degraded))), Counter()
                    out = np.asarray(restorer.restore_batch(degraded, given), np.float32)
                ms = (time.perf_counter() - t0) * 1000.0 / len(degraded)
                kept, kept_emb = clean[keep], [clean_emb[i] for i in keep] if clean_emb else []
                p = [psnr(c, o) for c, o in zip(kept, out, strict=True)]
                finite = [v for v in p if math.isfinite(v)]
                row = {
                    "degradation": kind, "strength": strength, "restorer": name, "family": restorer.family,
                    "uses_strength": bool(restorer.uses_strength), "n": len(keep), "psnr": _mean(p),
                    "psnr_ci95": 1.96 * float(np.std(finite, ddof=1)) / math.sqrt(len(finite))
                    if len(finite) > 1 else float("nan"),
                    "ssim": _mean([ssim(c, o) for c, o in zip(kept, out, strict=True)]),
                    "lpips": _mean([lpips_fn(c, o) for c, o in zip(kept, out, strict=True)]) if lpips_fn else "",
                    "id_l2": "", "id_n": 0, "ms_per_face": ms,
                    "embedder": getattr(embedder, "name", "") if embedder else "",
                    "n_failed": sum(failed.values()), "failures": "; ".join(f"{k}={v}" for k, v in failed.items()),
                    "strength_given": "true" if restorer.uses_strength else
                    "estimated" if hasattr(restorer, "kind_misses") else "none",
                    "kind_misses": restorer.kind_misses - misses0 if hasattr(restorer, "kind_misses") else "",
                }
                if embedder is not None:
                    dists = []
                    for ref, o in zip(kept_emb, out, strict=True):
                        e = embedder.embed(o) if ref is not None else None
                        if e is not None:
                            dists.append(float(np.linalg.norm(e - ref)))
                    row["id_l2"], row["id_n"] = (_mean(dists) if dists else float("nan")), len(dists)
                block.append(row)
                log(f"{kind} {strength:g} {name:>24}: PSNR {row['psnr']:.2f} SSIM {row['ssim']:.3f} "
                    f"id_l2 {row['id_l2'] if row['id_l2'] == '' else format(row['id_l2'], '.3f')} {ms:.1f} ms/face")
            _add_gains(block)
            rows.extend(block)
    return rows, reused


def _load_reusable(path: Path, n: int) -> dict[tuple[str, float, str], dict]:
    """Deterministic rows (classical, none) of an earlier ``eval.csv`` computed on the same ``n`` faces."""
    if not path.is_file():
        return {}
    out = {}
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            if r["family"] not in ("classical", "none") or int(r["n"]) != n:
                continue
            row: dict = {}
            for key, value in r.items():
                if key in ("degradation", "restorer", "family", "embedder", "strength_given", "failures"):
                    row[key] = value
                elif key == "uses_strength":
                    row[key] = value == "True"
                elif key in ("n", "id_n"):
                    row[key] = int(value)
                else:
                    row[key] = float(value) if value != "" else ""
            out[(row["degradation"], row["strength"], row["restorer"])] = row
    return out


def _add_gains(block: list[dict]) -> None:
    """Fill the gain columns of one setting's rows against ``none`` and the best classical row."""
    base = next((r for r in block if r["restorer"] == "none"), None)
    classical = [r for r in block if r["family"] == "classical"]
    best = max(classical, key=lambda r: r["psnr"]) if classical else None
    for r in block:
        r["psnr_gain_vs_degraded"] = r["psnr"] - base["psnr"] if base else ""
        r["ssim_gain_vs_degraded"] = r["ssim"] - base["ssim"] if base else ""
        r["psnr_gain_vs_best_classical"] = r["psnr"] - best["psnr"] if best else ""
        has_id = base is not None and r["id_l2"] != "" and base["id_l2"] != ""
        r["id_l2_change_vs_degraded"] = r["id_l2"] - base["id_l2"] if has_id else ""


def _fmt(value, digits: int) -> str:
    if value == "" or value is None:
        return "–"
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    return f"{value:.{digits}f}"


def _signed(value, digits: int) -> str:
    if value == "" or value is None:
        return "–"
    return f"{value:+.{digits}f}"


def write_markdown(rows: list[dict], path: Path, meta: dict) -> None:
    """Write the table as markdown, one section per degradation, ``none`` (degraded input) first.

    Args:
        rows: rows from :func:`evaluate`.
        path: output ``.md`` file.
        meta: run description printed above the table.
    """
    lines = [
        f"# Restoration on {meta.get('title', 'the held-out built-in test split')}",
        "",
        meta.get("data_desc", f"{meta['n']} test faces of `builtin_faces({meta['faces_n']}, seed={meta['seed']})`")
        + ", 128×128, degraded then rounded to 8 bits. Strengths in pixels of the 128-px crop. `none` = the "
        "degraded input itself. Restorers marked ✓ are told the true strength/kernel; *estimated* ones are told "
        "the blind estimator's per-image estimate (`deblur.estimate`); the others are blind. "
        "Identity: L2 distance between dlib 128-d embeddings of the output and the clean face "
        "(lower = closer; ASSETS.md: same person 0.33–0.43, different people 0.82–0.88, and on generated "
        "faces the nearest *other* face has median 0.47, so dlib's usual 0.6 threshold is not calibrated here). "
        "PSNR ± is a 95% CI of the mean. Gains are in dB.",
        "",
        *[f"- {note}" for note in meta["notes"]],
        f"- generated {meta['date']} on {meta['machine']}, {meta['seconds']:.0f} s",
        "",
    ]
    has_lpips = any(r["lpips"] != "" for r in rows)
    head = ["strength", "restorer", "told strength", "PSNR", "SSIM"] + (["LPIPS"] if has_lpips else []) + [
        "id L2", "Δ PSNR vs degraded", "Δ PSNR vs best classical", "Δ id L2 vs degraded", "ms/face"]
    for kind in dict.fromkeys(r["degradation"] for r in rows):
        lines += [f"## {kind} ({STRENGTHS[kind].name})", "", "| " + " | ".join(head) + " |",
                  "|" + "---|" * len(head)]
        block = [r for r in rows if r["degradation"] == kind]
        block.sort(key=lambda r: (r["strength"], r["restorer"] != "none", r["family"] != "classical", -r["psnr"]))
        for r in block:
            failed = f" ({r['n_failed']} failed: {r['failures']})" if r.get("n_failed") else ""
            if r.get("kind_misses"):
                failed += f" (kind misjudged for {r['kind_misses']})"
            told = "✓" if r["uses_strength"] else "estimated" if r.get("strength_given") == "estimated" else ""
            cells = [f"{r['strength']:g}", f"`{r['restorer']}`{failed}", told,
                     f"{r['psnr']:.2f} ± {r['psnr_ci95']:.2f}", f"{r['ssim']:.3f}"]
            if has_lpips:
                cells.append(_fmt(r["lpips"], 3))
            cells += [_fmt(r["id_l2"], 3), _signed(r["psnr_gain_vs_degraded"], 2),
                      _signed(r["psnr_gain_vs_best_classical"], 2), _signed(r["id_l2_change_vs_degraded"], 3),
                      f"{r['ms_per_face']:.1f}"]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    path.write_text("\n".join(lines))


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; see the module docstring."""
    ap = argparse.ArgumentParser(prog="python -m deblur.train.evaluate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="output folder for eval.csv, eval.md, eval.json")
    ap.add_argument("--n", type=int, default=200, help="number of held-out test faces (default 200)")
    ap.add_argument("--strengths", nargs="*", metavar="KIND=S1,S2",
                    help="strengths per degradation, e.g. gaussian=2,4,6 motion=15 (default: strengths.EVAL_GRID)")
    ap.add_argument("--faces-n", type=int, default=4000, help="size of the built-in set whose test split is used")
    ap.add_argument("--seed", type=int, default=0, help="built-in set seed")
    ap.add_argument("--weights-dir", default=None, help="weights folder for learned models (default: weights/)")
    ap.add_argument("--no-identity", action="store_true", help="skip the dlib identity distances (~80 ms/image)")
    ap.add_argument("--embedder", default="dlib", help="identity embedder name (default dlib)")
    ap.add_argument("--reuse", action="store_true",
                    help="reuse classical/none rows of OUT/eval.csv from an earlier run on the same --n "
                         "(they are deterministic); learned models are always re-evaluated")
    ap.add_argument("--external", action="append", default=[], metavar="NAME=SPEC",
                    help="evaluate an external restorer too (repeatable): NAME=module:callable or "
                         "NAME=http://host:port/#/api_name or NAME=owner/space#/api_name (see docs/EXTERNAL.md)")
    ap.add_argument("--external-concurrency", type=int, default=DEFAULT_CONCURRENCY,
                    help="calls in flight per external restorer")
    ap.add_argument("--data", default="builtin",
                    help="builtin (test split of the generated faces, default), real-faces (crops of the two real "
                         "faces we have offline: astronaut, grace_hopper), real-photos (tiles of the natural photos "
                         "coffee and rocket; use --no-identity), or a FOLDER of your own photos (largest face of each, "
                         "cropped to 128 px)")
    ap.add_argument("--no-estimated", action="store_true",
                    help="skip the rows of non-blind restorers told the estimated instead of the true strength")
    args = ap.parse_args(argv)
    if args.n < 1:
        ap.error("--n must be >= 1")
    try:
        strengths = parse_strengths(args.strengths, defaults=EVAL_GRID)
    except ValueError as err:
        ap.error(str(err))

    extra_meta, skipped = {}, []
    if args.data == "builtin":
        test = builtin_faces(args.faces_n, seed=args.seed).subset("test")
        if args.n > len(test):
            ap.error(f"--n {args.n} exceeds the {len(test)} test faces of builtin_faces({args.faces_n})")
        clean = test.floats()[: args.n]
    else:
        try:
            images, skipped = (real_split(args.data), []) if args.data.startswith("real-") else \
                folder_faces(args.data)
        except ValueError as err:
            ap.error(str(err))
        if not images:
            ap.error(f"--data {args.data}: no photo with a detectable face ({'; '.join(skipped)})")
        names = list(images)[: args.n]
        clean = np.stack([images[k] for k in names]).astype(np.float32)
        args.n = len(clean)
        extra_meta = {"title": f"real photographs ({args.data})", "images": names, "skipped": skipped,
                      "data_desc": f"{len(clean)} images of `--data {args.data}` ({', '.join(names)})"}
    t0 = time.perf_counter()
    reuse = _load_reusable(args.out / "eval.csv", args.n) if args.reuse else {}
    try:
        outside = external_restorers(args.external, list(strengths), concurrency=args.external_concurrency)
    except ValueError as err:  # a bad spec, an unimportable callable or an unreachable app
        ap.error(str(err))
    try:
        rows, notes = evaluate(clean, strengths, args.weights_dir, identity=not args.no_identity,
                               embedder_name=args.embedder, reuse=reuse, extra=outside,
                               estimated=not args.no_estimated)
    finally:
        close_restorers(outside)
    seconds = time.perf_counter() - t0
    meta = {"n": args.n, "faces_n": args.faces_n, "seed": args.seed, "split": "test", "strengths": strengths,
            "notes": notes, "seconds": seconds, "date": time.strftime("%Y-%m-%d %H:%M"),
            "machine": f"{platform.machine()} CPU, {platform.python_version()}", "columns": COLUMNS,
            "data": args.data, **extra_meta}
    if skipped:
        notes.append(f"{len(skipped)} photos skipped: " + "; ".join(skipped))
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "eval.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()})
    write_markdown(rows, args.out / "eval.md", meta)
    (args.out / "eval.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"wrote {args.out / 'eval.csv'}, {args.out / 'eval.md'} ({seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
