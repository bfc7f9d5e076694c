"""Dataset mode: the one-face sweep over many faces and the distribution of safe strengths per group."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from audit.engine import AuditStep, Engine, Gallery, SequentialEngine
from audit.groups import PREDICTED_ATTRIBUTES
from audit.safety.figures import group_figures
from audit.safety.gallery import GalleryFaces
from audit.safety.sweep import LOWER_BOUND_NOTE, SLOW_RESTORERS, resolve_grid, sweep_face
from audit.stats import group_metrics
from audit.step import single_thread
from deblur.degrade import DEGRADATIONS, NOISE_SIGMA
from deblur.embed import Embedder, get_embedder

__all__ = ["DatasetSafety", "group_table", "sweep_dataset"]


@dataclass
class DatasetSafety:
    """Per-face safe strengths over a data set and their distribution per group.

    Attributes:
        per_face: one row per face: ``image_id``, group columns, ``safe_<kind>`` (NaN: no tested strength is
            safe), ``first_safe_<kind>``.
        rows: the long sweep table of every face (``image_id`` + :attr:`SweepResult.table` columns).
        groups: per kind × attribute × group: n, faces with a safe strength, mean/median safe strength with
            bootstrap CIs, rate of faces with *no* safe strength (Wilson CI), ratio/difference vs reference.
        group_columns: attribute → ``"label"`` or ``"prediction"``.
        settings: how it was run (embedder, threshold, margin, grid, excluded restorers, seconds).
    """

    per_face: pd.DataFrame
    rows: pd.DataFrame
    groups: pd.DataFrame
    group_columns: dict[str, str]
    settings: dict

    def write(self, out: str | Path, plotlyjs: str = "cdn") -> list[Path]:
        """Write ``safety_per_image.csv``, ``safety_rows.csv``, ``safety_groups.csv``, ``safety.json`` and
        ``safety_groups.html`` into ``out`` (an audit folder: they sit next to its ``per_image.csv``, joined on
        ``image_id``)."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        paths = [out / "safety_per_image.csv", out / "safety_rows.csv", out / "safety_groups.csv",
                 out / "safety.json", out / "safety_groups.html"]
        self.per_face.to_csv(paths[0], index=False)
        self.rows.to_csv(paths[1], index=False)
        self.groups.to_csv(paths[2], index=False)
        paths[3].write_text(json.dumps({**self.settings, "group_columns": self.group_columns,
                                        "note": LOWER_BOUND_NOTE}, indent=2, default=str))
        figs = group_figures(self)
        with paths[4].open("w", encoding="utf-8") as fh:
            for k, fig in enumerate(figs):
                fh.write(fig.to_html(full_html=False, include_plotlyjs=plotlyjs if k == 0 else False))
        return paths


def _sweep_threshold(long: list[pd.DataFrame]) -> float | None:
    """The threshold the sweeps used (threshold-only mode), read back from their rows."""
    return float(long[0]["threshold"].iloc[0]) if long else None


def sweep_dataset(faces: Sequence[tuple[str, np.ndarray, Mapping[str, str]]], *, embedder: Embedder | None = None,
                  gallery: Gallery | None = None, degradations: Sequence[str] = DEGRADATIONS,
                  strengths: Mapping[str, Sequence[float]] | None = None, margin: float = 0.0,
                  thorough: bool = False, predict: Sequence[str] | None = None, n_boot: int = 1000, seed: int = 0,
                  min_group_n: int = 30, progress: Callable[[int, int], None] | None = None,
                  crop: str = "detect",
                  extra_restorers: Mapping[str, Mapping[str, object]] | None = None,
                  engine: Engine | None = None, candidates: GalleryFaces | None = None,
                  identity: str | None = None) -> DatasetSafety:
    """:func:`sweep_face` over many faces, then the distribution of safe strengths per group.

    Groups are formed exactly as the audit forms them (:func:`audit.prepare.prepare_face`: dataset labels plus
    predicted gender, age bin and skin-tone bin). The gallery is ``gallery`` plus every face of the data set not
    already in it; without one, the data set's own faces (a gallery of the same kind as each query; its threshold
    calibrated on their impostor pairs, or the embedder's published one when there are too few). Faces whose
    clean crop has no face are counted and skipped.

    Args:
        faces: ``(image_id, image, labels)`` triples (labels: group column → value, may be empty).
        embedder: identity judge (default dlib).
        gallery: base gallery of faces like these (the built-in gallery for built-in faces only).
        degradations: kinds to sweep.
        strengths: kind → strengths.
        margin: distance margin.
        thorough: include Richardson–Lucy.
        predict: predicted attributes (default :data:`audit.groups.PREDICTED_ATTRIBUTES`).
        n_boot: bootstrap resamples.
        seed: seed of bootstraps and the noise.
        min_group_n: groups smaller than this are flagged ``small``.
        progress: called as ``progress(done, total)`` per face.
        crop: ``"detect"`` (photos) or ``"whole"`` (already facedrift crops, e.g. the built-in set); see
            :func:`audit.prepare.to_crop`.
        extra_restorers: degradation → {name → restorer} added to ours (external restorers; this process only).
        engine: where the clean pass and the sweeps run (default: this process; see :mod:`audit.parallel`).
        candidates: clean photos of ``gallery``'s faces for the parrot and the learned attacker
            (:func:`audit.safety.builtin_candidates` for the built-in gallery). The data set's own crops are
            always added: every face's attackers hold the other faces of the data set.
        identity: labels column saying who each photo shows. A face's attackers then hold the person through
            their *other* photos (the gallery and the parrot's candidates lose every photo of the person but
            those, under the face's id), the threshold is calibrated on pairs of different people only, and the
            column is not a group. A person with one photo falls back to the re-captured proxy (the
            ``second_view`` column of the rows says which). Needs the data set's own faces as the gallery.
    """
    start = time.perf_counter()
    grid = resolve_grid(degradations, strengths)
    embedder = embedder or get_embedder("dlib")
    predict = PREDICTED_ATTRIBUTES if predict is None else tuple(predict)
    own = engine is None
    engine = engine or SequentialEngine()
    if any(extra_restorers.values() if extra_restorers else ()) and not isinstance(engine, SequentialEngine):
        raise ValueError("external restorers run in this process: use --engine local --workers 1 with --external")
    items = [(image_id, img, dict(labels)) for image_id, img, labels in faces]
    who: dict[str, str] = {}
    if identity:
        if gallery is not None:
            raise ValueError("identity: the gallery is the data set's own faces (pass no gallery)")
        lacking = [image_id for image_id, _, labels in items if not str(labels.get(identity, "")).strip()]
        if lacking:
            raise ValueError(f"identity column {identity!r} is missing or empty for {len(lacking)} face(s), e.g. "
                             f"{lacking[0]}; every face needs it (--labels CSV)")
        who = {image_id: str(labels.pop(identity)) for image_id, _, labels in items}
    order = {image_id: k for k, (image_id, _, _) in enumerate(items)}
    step = AuditStep(embedder.key, None, (), tuple(predict), crop)
    cleans = sorted(engine.clean(step, items), key=lambda c: order[c.image_id])
    label_cols = sorted({c for _, _, labels in faces for c in labels} - {identity})
    group_columns = {**{c: "label" for c in label_cols}, **{c: "prediction" for c in predict}}
    with_face = [c for c in cleans if c.embedding is not None]
    if gallery is None:  # the data set's own faces: a gallery of the same kind as every query
        base = Gallery.build([c.image_id for c in with_face], [c.embedding for c in with_face], seed=seed,
                             embedder_key=embedder.key,
                             identities=[who[c.image_id] for c in with_face] if identity else None
                             ) if len(with_face) >= 2 else None
    else:
        base = gallery
        extra = [c for c in with_face if c.image_id not in base.ids]
        if extra:
            ids = base.ids + [c.image_id for c in extra]
            base = Gallery(ids, np.vstack([base.embeddings, *[c.embedding[None] for c in extra]]), base.centre,
                           base.threshold)
    known = candidates
    own_crops = [c for c in with_face if known is None or c.image_id not in known.ids]
    cands = GalleryFaces.of([*(known.ids if known else ()), *(c.image_id for c in own_crops)],
                            [*(known.images if known else ()), *(c.image for c in own_crops)])
    task = SweepFaces(embedder.key, base, {k: tuple(v) for k, v in grid.items()}, margin, thorough, seed,
                      extra_restorers, cands, {c.image_id: who[c.image_id] for c in with_face} if identity else None)
    done: dict[str, tuple[dict, pd.DataFrame]] = {}
    by_id = {c.image_id: c for c in with_face}
    for image_id, recommendations, seconds, table in engine.map(task, with_face, batch_size=1):
        c = by_id[image_id]
        row = {"image_id": image_id, **{a: c.groups.get(a, "") for a in group_columns}}
        for kind, rec in recommendations.items():
            row[f"safe_{kind}"] = math.nan if rec.strength is None else rec.strength
            row[f"first_safe_{kind}"] = math.nan if rec.first_safe is None else rec.first_safe
        row["sweep_seconds"] = seconds
        done[image_id] = (row, table.assign(image_id=image_id))
        if progress is not None:
            progress(len(done), len(with_face))
    if own:
        engine.close()
    per_face = [done[c.image_id][0] for c in with_face]  # data order, whatever order the engine finished in
    long = [done[c.image_id][1] for c in with_face]
    per_face_df = pd.DataFrame(per_face)
    rows = pd.concat(long, ignore_index=True) if long else pd.DataFrame()
    groups = group_table(per_face_df, list(grid), group_columns, n_boot, seed, min_group_n)
    thr = base.threshold if base is not None else None
    settings = {"embedder": embedder.name, "threshold": thr.distance if thr else _sweep_threshold(long),
                "threshold_source": thr.source if thr else "published (single face: no gallery)",
                "fmr": thr.fmr_target if thr else None, "margin": margin,
                "strengths": {k: list(v) for k, v in grid.items()},
                "gallery_size": len(base.ids) if base is not None else 0,
                "excluded_restorers": [] if thorough else list(SLOW_RESTORERS), "n_faces": len(cleans),
                "n_no_face_clean": len(cleans) - len(with_face), "seconds": time.perf_counter() - start,
                "n_boot": n_boot, "seed": seed, "noise": NOISE_SIGMA,
                "attackers": list(rows["attacker"].unique()) if len(rows) else [],
                "identity": identity,
                "second_view": (rows.groupby("second_view")["image_id"].nunique().to_dict()
                                if len(rows) and "second_view" in rows else {})}
    return DatasetSafety(per_face_df, rows, groups, group_columns, settings)


@dataclass(frozen=True)
class SweepFaces:
    """:func:`sweep_face` of clean faces as an engine task (:class:`audit.engine.BatchTask`): the embedder loads
    once per worker, the restorers through the registry's cache."""

    embedder: str
    gallery: Gallery
    grid: Mapping[str, tuple[float, ...]]
    margin: float
    thorough: bool
    seed: int
    extra_restorers: Mapping[str, Mapping[str, object]] | None = None  # this process only (not picklable)
    candidates: GalleryFaces | None = None
    identities: Mapping[str, str] | None = None  # image id -> person (an identity column)

    def for_face(self, image_id: str) -> tuple[Gallery, list[np.ndarray]]:
        """The gallery of one face's attackers and the person's other photos (references).

        With identities, every other photo of the person leaves the gallery (and so the candidates) and becomes
        a reference, added back under ``image_id``: rank-1 then means "nearest is this person", and the parrot
        never holds the person as a stranger.
        """
        if not self.identities or self.gallery is None:
            return self.gallery, []
        person = self.identities[image_id]
        same = {i for i, p in self.identities.items() if p == person and i != image_id}
        keep = [k for k, i in enumerate(self.gallery.ids) if i not in same]
        gallery = Gallery([self.gallery.ids[k] for k in keep], self.gallery.embeddings[keep], self.gallery.centre,
                          self.gallery.threshold)
        pool = self.candidates
        refs = [pool.images[k] for k, i in enumerate(pool.ids) if i in same] if pool is not None else []
        return gallery, refs

    @property
    def key(self) -> tuple:
        return ("safety-sweep", self.embedder)

    def load(self) -> Embedder:
        return get_embedder(self.embedder)

    def run(self, embedder: Embedder, batch: list) -> list:
        out = []
        for c in batch:
            gallery, references = self.for_face(c.image_id)
            with single_thread():  # the same results in every engine
                res = sweep_face(c.image, gallery=gallery, embedder=embedder, degradations=list(self.grid),
                                 references=references,
                                 strengths=self.grid, margin=self.margin, own_id=c.image_id,
                                 thorough=self.thorough, seed=self.seed, require_face=False,
                                 extra_restorers=self.extra_restorers, candidates=self.candidates)
            out.append((c.image_id, res.recommendations, res.seconds, res.table))
        return out


def group_table(per_face: pd.DataFrame, kinds: Sequence[str], group_columns: Mapping[str, str], n_boot: int,
                seed: int, min_n: int) -> pd.DataFrame:
    """Per kind × attribute × group statistics of the safe strengths in ``per_face`` (:attr:`DatasetSafety.groups`)."""
    out = []
    if per_face.empty:
        return pd.DataFrame()
    attrs = {"all": "all", **group_columns}
    for kind in kinds:
        values = per_face[f"safe_{kind}"].to_numpy(float)
        none_safe = np.isnan(values)
        for attr, source in attrs.items():
            groups = ["all"] * len(per_face) if attr == "all" else per_face[attr].astype(str).tolist()
            for s in group_metrics(values, none_safe, groups, min_n=min_n, n_boot=n_boot, seed=seed):
                out.append({"degradation": kind, "attribute": attr, "label_source": source, "group": s.group,
                            "n": s.n, "n_safe": s.n_valid, "mean": s.mean, "mean_lo": s.mean_lo,
                            "mean_hi": s.mean_hi, "median": s.median, "median_lo": s.median_lo,
                            "median_hi": s.median_hi, "no_safe": s.failures, "no_safe_rate": s.fail_rate,
                            "no_safe_lo": s.fail_lo, "no_safe_hi": s.fail_hi, "small": s.small,
                            "is_reference": s.is_reference, "mean_diff": s.mean_diff, "p_mean": s.p_mean,
                            "p_no_safe": s.p_fail})
    return pd.DataFrame(out)
