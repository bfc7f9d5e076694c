"""Audit reports: the tidy group table, figures (plotly HTML) and contact sheets of the skin-tone bins.

``groups.csv`` has one row per model × degradation × strength × attribute × group, with every setting that
produced it (embedder, threshold, FMR, n_boot, seed) and the source of the group (``label`` or
``prediction``), so a row can be read on its own.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.express as px
from PIL import Image, ImageDraw

from audit.config import AuditConfig
from audit.stats import adjust_pvalues, bootstrap_ci, group_metrics, wilson_interval

__all__ = ["contact_sheets", "figures", "summarize", "write_report"]

SETTING = ["model", "degradation", "strength"]


def _bool(series: pd.Series) -> pd.Series:
    """CSV booleans ('True'/'False'/'') as a float 1/0/NaN series."""
    mapped = series.map({True: 1.0, False: 0.0, "True": 1.0, "False": 0.0})
    return mapped.astype(float)


def _rate(flags: pd.Series, level: float = 0.95) -> tuple[float, float, float]:
    x = flags.dropna()
    if not len(x):
        return float("nan"), float("nan"), float("nan")
    k = int(x.sum())
    lo, hi = wilson_interval(k, len(x), level)
    return k / len(x), lo, hi


def summarize(rows: pd.DataFrame, attributes: Mapping[str, str], *, n_boot: int = 1000, seed: int = 0,
              min_n: int = 30, reference: Mapping[str, str] | None = None, alpha: float = 0.05,
              adjust: str = "holm") -> pd.DataFrame:
    """Per-group table of a per-image audit.

    Args:
        rows: per-image rows (``per_image.csv``).
        attributes: group column → source (``"label"`` or ``"prediction"``). An ``all`` row is always added.
        n_boot: bootstrap resamples for mean/median similarity.
        seed: seed of bootstraps and permutation tests.
        min_n: groups with fewer faces (with a clean face) are flagged ``small_group``.
        reference: attribute → reference group (default: the largest group of that attribute).
        alpha: family-wise error level for ``significant``.
        adjust: ``"holm"`` or ``"bonferroni"``, applied over all comparisons of the table per metric.

    Returns:
        One row per model × degradation × strength × attribute × group.

    Failure = the restored face does not match its clean original at the threshold, or no face is found in
    it. Faces whose *clean* image had no face are counted (``n_no_face_clean``) but have no similarity.
    """
    reference = dict(reference or {})
    df = rows.copy()
    df["_all"] = "all"
    for col in ("match_restored", "match_degraded", "rank1_restored", "rank1_degraded", "face_detected_restored"):
        df[col] = _bool(df[col]) if col in df else np.nan
    out = []
    for key, part in df.groupby(SETTING, sort=True):
        for attr, source in [("_all", "all"), *attributes.items()]:
            if attr not in part:
                continue
            groups = part[attr].fillna("missing").astype(str)
            usable = part["status"].isin(["ok", "no_face_restored"])
            values = part.loc[usable, "sim_restored_clean"].astype(float)
            failures = (part.loc[usable, "match_restored"] != 1.0) | (part.loc[usable, "status"] == "no_face_restored")
            ref = reference.get(attr)
            if ref is not None and ref not in set(groups[usable]):
                raise ValueError(f"reference group {ref!r} is not among the groups of {attr!r}: "
                                 f"{sorted(set(groups[usable]))}")
            stats = {s.group: s for s in group_metrics(values, failures, groups[usable], reference=ref, min_n=min_n,
                                                       n_boot=n_boot, seed=seed)} if usable.any() else {}
            for name in sorted(set(groups)):
                g = part[groups == name]
                ok = g[g["status"].isin(["ok", "no_face_restored"])]
                s = stats.get(name)
                r1, r1_lo, r1_hi = _rate(ok["rank1_restored"])
                r1d, r1d_lo, r1d_hi = _rate(ok["rank1_degraded"])
                det, _, _ = _rate(ok["face_detected_restored"])
                ita = ok["delta_ita"].astype(float).dropna() if "delta_ita" in ok else pd.Series(dtype=float)
                ita_lo, ita_hi = bootstrap_ci(ita, "mean", n_boot, seed) if len(ita) else (np.nan, np.nan)
                sim_deg = ok["sim_degraded_clean"].astype(float)
                out.append({
                    "model": key[0], "degradation": key[1], "strength": key[2],
                    "model_family": g["model_family"].iloc[0] if "model_family" in g else "",
                    "uses_strength": g["uses_strength"].iloc[0] if "uses_strength" in g else "",
                    "attribute": "all" if attr == "_all" else attr, "group": name, "label_source": source,
                    "n": len(g), "n_no_face_clean": int((g["status"] == "no_face_clean").sum()),
                    "n_no_face_restored": int((g["status"] == "no_face_restored").sum()),
                    "n_error": int(g["status"].astype(str).str.startswith("error").sum()),
                    "n_evaluated": s.n if s else 0, "n_with_similarity": s.n_valid if s else 0,
                    "sim_mean": s.mean if s else np.nan, "sim_mean_lo": s.mean_lo if s else np.nan,
                    "sim_mean_hi": s.mean_hi if s else np.nan, "sim_median": s.median if s else np.nan,
                    "sim_median_lo": s.median_lo if s else np.nan, "sim_median_hi": s.median_hi if s else np.nan,
                    "sim_degraded_mean": float(sim_deg.mean()) if len(sim_deg) else np.nan,
                    "dist_restored_clean_mean": float(ok["dist_restored_clean"].astype(float).mean()),
                    "dist_degraded_clean_mean": float(ok["dist_degraded_clean"].astype(float).mean()),
                    "drift_mean": float(ok["drift"].astype(float).mean()),
                    "fail_rate": s.fail_rate if s else np.nan, "fail_lo": s.fail_lo if s else np.nan,
                    "fail_hi": s.fail_hi if s else np.nan, "failures": s.failures if s else 0,
                    "rank1_restored": r1, "rank1_restored_lo": r1_lo, "rank1_restored_hi": r1_hi,
                    "rank1_degraded": r1d, "rank1_degraded_lo": r1d_lo, "rank1_degraded_hi": r1d_hi,
                    "face_detect_rate_restored": det,
                    "psnr_mean": float(ok["psnr_restored"].astype(float).mean()),
                    "ssim_mean": float(ok["ssim_restored"].astype(float).mean()),
                    "delta_ita_mean": float(ita.mean()) if len(ita) else np.nan, "delta_ita_lo": ita_lo,
                    "delta_ita_hi": ita_hi, "n_ita": len(ita),
                    "is_reference": s.is_reference if s else False,
                    "sim_ratio": s.mean_ratio if s else np.nan, "sim_diff": s.mean_diff if s else np.nan,
                    "fail_ratio": s.fail_ratio if s else np.nan, "fail_diff": s.fail_diff if s else np.nan,
                    "p_sim": s.p_mean if s else np.nan, "p_fail": s.p_fail if s else np.nan,
                    "small_group": (s.n if s else 0) < min_n,
                })
    table = pd.DataFrame(out)
    if table.empty:
        return table
    for col in ("p_sim", "p_fail"):
        table[f"{col}_{adjust}"] = adjust_pvalues(table[col].to_numpy(float), adjust)
    table["significant"] = (table[f"p_sim_{adjust}"] < alpha) | (table[f"p_fail_{adjust}"] < alpha)
    return table


def figures(table: pd.DataFrame, title_note: str = "") -> list:
    """Plotly figures: similarity by group (CI bars), distance vs strength per group, ΔITA by group."""
    figs = []
    t = table[table["attribute"] != "all"].copy()
    if t.empty:
        t = table.copy()
    t["setting"] = t["degradation"] + " " + t["strength"].map(lambda s: f"{s:g}")
    t["err_plus"] = t["sim_mean_hi"] - t["sim_mean"]
    t["err_minus"] = t["sim_mean"] - t["sim_mean_lo"]
    t["group_label"] = t["attribute"] + "=" + t["group"] + np.where(t["small_group"], " (small n)", "")
    for attr, part in t.groupby("attribute", sort=True):
        source = part["label_source"].iloc[0]
        fig = px.scatter(part, x="setting", y="sim_mean", error_y="err_plus", error_y_minus="err_minus",
                         color="group_label", facet_col="model", facet_col_wrap=3,
                         hover_data=["n_evaluated", "fail_rate", "rank1_restored", "rank1_degraded", "significant"],
                         title=f"Identity similarity restored→clean by {attr} ({source}); 95% bootstrap CI{title_note}",
                         labels={"sim_mean": "centred cosine similarity", "setting": "degradation, strength (px)"})
        fig.update_traces(mode="markers")
        figs.append(fig)
    for attr, part in t.groupby("attribute", sort=True):
        fig = px.line(part.sort_values("strength"), x="strength", y="dist_restored_clean_mean", color="group_label",
                      line_dash="model", facet_col="degradation", markers=True,
                      hover_data=["drift_mean", "dist_degraded_clean_mean", "n_evaluated"],
                      title=f"L2 distance restored→clean vs strength, by {attr}{title_note}",
                      labels={"dist_restored_clean_mean": "mean L2 distance to clean", "strength": "strength (px)"})
        fig.update_xaxes(matches=None)
        figs.append(fig)
    ita = t[t["attribute"] == "pred_skin_tone_bin"] if (t["attribute"] == "pred_skin_tone_bin").any() else t
    ita = ita.assign(ita_plus=ita["delta_ita_hi"] - ita["delta_ita_mean"],
                     ita_minus=ita["delta_ita_mean"] - ita["delta_ita_lo"])
    fig = px.scatter(ita, x="setting", y="delta_ita_mean", error_y="ita_plus", error_y_minus="ita_minus",
                     color="group_label", facet_col="model", facet_col_wrap=3,
                     title=f"ITA shift restored − clean (degrees, same skin pixels), 95% CI{title_note}",
                     labels={"delta_ita_mean": "mean ΔITA (°)", "setting": "degradation, strength (px)"})
    figs.append(fig)
    return figs


def contact_sheets(cleans: Sequence, out: Path, attribute: str = "pred_skin_tone_bin", per_group: int = 8,
                   seed: int = 0) -> list[Path]:
    """One PNG per group of ``attribute`` showing up to ``per_group`` of its clean face crops (seeded pick)."""
    by_group: dict[str, list] = {}
    for c in cleans:
        if c.image is not None and attribute in c.groups:
            by_group.setdefault(c.groups[attribute], []).append(c)
    paths = []
    rng = np.random.default_rng(seed)
    for group, members in sorted(by_group.items()):
        pick = [members[i] for i in sorted(rng.choice(len(members), min(per_group, len(members)), replace=False))]
        size = pick[0].image.shape[0]
        sheet = Image.new("RGB", (size * len(pick), size + 18), "white")
        for j, c in enumerate(pick):
            sheet.paste(Image.fromarray((np.clip(c.image, 0, 1) * 255 + 0.5).astype(np.uint8)), (j * size, 18))
            ita = c.info.get("ita")
            if ita is not None and np.isfinite(ita):
                ImageDraw.Draw(sheet).text((j * size + 2, 20), f"ITA {ita:.0f} L*{c.info.get('skin_lightness', 0):.0f}",
                                           fill="yellow")
        ImageDraw.Draw(sheet).text((2, 3), f"{attribute} = {group} (prediction; {len(members)} faces)", fill="black")
        path = out / f"contact_{attribute}_{group}.png"
        sheet.save(path)
        paths.append(path)
    return paths


def write_report(out: Path, per_image_csv: Path, run_info: dict, config, cleans: Sequence = ()) -> list[Path]:
    """Write ``groups.csv``, ``figures.html``, ``run.json`` and contact sheets next to ``per_image.csv``."""
    out = Path(out)
    rows = pd.read_csv(per_image_csv, keep_default_na=True, dtype={"image_id": str})
    attributes = {a: s for a, s in run_info["label_source"].items()}
    table = summarize(rows, attributes, n_boot=config.n_boot, seed=config.seed, min_n=config.min_group_n,
                      reference=config.reference)
    files = [per_image_csv]
    thr = run_info.get("threshold") or {}
    if not table.empty:
        front = {"embedder": run_info["embedder"], "threshold": thr.get("distance", np.nan), "fmr": config.fmr}
        if "source" in thr:  # runs from round two on say where the threshold comes from (older run.json: not)
            front["threshold_source"] = thr["source"]
        front.update({"n_boot": config.n_boot, "seed": config.seed})
        for k, (column, value) in enumerate(front.items()):
            table.insert(k, column, value)
    groups_csv = out / "groups.csv"
    table.to_csv(groups_csv, index=False, float_format="%.6g")
    files.append(groups_csv)
    if not table.empty:
        note = f" — {run_info['embedder']}, threshold {thr.get('distance', float('nan')):.3f} ({thr.get('source', '')})"
        if thr.get("note"):
            note += f". Warning: {thr['note']}"
        figs = figures(table, note)
        html = out / "figures.html"
        plotlyjs = config.plotlyjs
        js = "cdn" if plotlyjs == "cdn" else True  # inline (works offline, ~4 MB) unless asked for the CDN
        parts = [f.to_html(full_html=False, include_plotlyjs=js if i == 0 else False) for i, f in enumerate(figs)]
        html.write_text("<html><head><meta charset='utf-8'><title>facedrift audit</title></head><body>"
                        f"<p>Groups: {', '.join(f'{a} ({s})' for a, s in attributes.items()) or 'none'}. "
                        "Similarity = cosine after subtracting the clean gallery's mean embedding.</p>"
                        + "\n".join(parts) + "</body></html>")
        files.append(html)
    if config.contact_sheets and "pred_skin_tone_bin" in attributes:
        files += contact_sheets(cleans, out, seed=config.seed)
    run_json = out / "run.json"
    run_json.write_text(json.dumps(run_info, indent=2, default=str))
    files.append(run_json)
    return files


def rebuild(out: str | Path) -> list[Path]:
    """Recompute ``groups.csv``, ``figures.html`` and ``run.json`` of a finished audit from its ``per_image.csv``.

    Uses the settings stored in ``run.json`` (contact sheets are kept as they are: they need the images).
    """
    out = Path(out)
    run_json = out / "run.json"
    if not (out / "per_image.csv").is_file():
        raise FileNotFoundError(f"{out} has no per_image.csv: it is not an audit folder (give the --out of an audit)")
    if not run_json.is_file():
        raise FileNotFoundError(f"the audit in {out} did not finish (per_image.csv but no run.json): rerun the same "
                                f"python -m audit command with --out {out} --resume to finish it; that also writes "
                                "the report")
    run_info = json.loads(run_json.read_text())
    config = AuditConfig(**{**run_info["config"], "contact_sheets": False})
    return write_report(out, out / "per_image.csv", run_info, config)
