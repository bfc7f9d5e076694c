"""Audit throughput of each engine in one run, and what a 1,000-face audit would take.

Usage::

    python -m bench.bench_audit [--n 48] [--workers 2] [--engines sequential local ray] [--batch-size 16]

Every engine runs the same audit: ``--n`` built-in faces (test split), the best shipped restorer of each
degradation (highest validation PSNR in ``weights/manifest.json``) plus ``none``, over Gaussian σ=4, pixelation
8 px and motion 15 px (6 rows per face), as ``python -m audit --models <best per kind> none --strengths
gaussian=4 pixelate=8 motion=15`` does. Rows:

- ``sequential, batch 1``: this process, one face at a time (the audit before issue 16 batched anything);
- ``sequential``: this process, batches of ``--batch-size`` (restorers and dlib's batch descriptor call);
- ``local``: ``--workers`` processes; ``ray``: Ray Data actor pools on a private local Ray instance.

For each: wall seconds end to end (start-up, clean pass, per-image pass, report), faces/s, the marginal faces/s
of the two passes once running (start-up excluded), the ratio of marginal rates to ``sequential, batch 1`` and
the projected wall time of 1,000 faces = measured time + (1000 − n) / marginal rate + the report's time scaled
to 1,000 faces. Last, the floor: the time of the identity embedder alone (dlib's descriptor, measured here) for
the 7 embeddings every face needs, spread over ``--workers`` cores. The load average is printed: on a shared
machine the numbers move with the other jobs.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import dataclass, field

from audit.config import AuditConfig
from audit.engine import SequentialEngine, run_audit
from audit.parallel import LocalPool, RayEngine
from deblur.restore.manifest import offered_models

KINDS = {"gaussian": (4.0,), "pixelate": (8.0,), "motion": (15.0,)}
TARGET_S = 300.0  # issue 16: 1,000 faces x 3 degradations x (best + none) in under 5 minutes on 2 cores


def best_restorers() -> list[str]:
    """The shipped learned model with the highest validation PSNR, per degradation."""
    best = []
    for kind in KINDS:
        found = offered_models(degradation=kind)
        if found:
            best.append(max(found, key=lambda name: found[name].get("metrics", {}).get("val_psnr", float("-inf"))))
    return best


@dataclass
class Clock:
    """Progress callback that keeps the time of every face done, per pass."""

    times: dict[str, list[float]] = field(default_factory=dict)

    def __call__(self, stage: str, done: int, total: int) -> None:
        marks = self.times.setdefault(stage, [])
        while len(marks) < done:
            marks.append(time.perf_counter())

    def seconds_per_face(self, stage: str) -> float:
        """Marginal time per face once the pass is running: from the first batch done to the last, over the
        faces done after the first batch (batched engines finish a batch of faces at once)."""
        marks = self.times.get(stage, [])
        first_batch = sum(1 for m in marks if m - marks[0] < 0.05) if marks else 0
        return (marks[-1] - marks[0]) / (len(marks) - first_batch) if len(marks) > first_batch else float("nan")


def run(name: str, engine, models: list[str], n: int, batch_size: int, boot: int) -> dict:
    clock = Clock()
    with tempfile.TemporaryDirectory(prefix="facedrift-bench-audit-") as out:
        config = AuditConfig(models=[*models, "none"], degradations=KINDS, n=n, n_boot=boot, out=out,
                             contact_sheets=False)
        start = time.perf_counter()
        with engine:
            result = run_audit(config, clock, engine=engine, batch_size=batch_size)
            report = time.perf_counter() - clock.times["audit"][-1]  # faces.csv, groups.csv (bootstraps), figures
        wall = time.perf_counter() - start
    marginal = clock.seconds_per_face("clean") + clock.seconds_per_face("audit")
    return {"engine": name, "faces": result.n_images, "wall": wall, "fps": result.n_images / wall,
            "marginal_fps": 1.0 / marginal, "per_face": marginal, "report": report}


def embedding_floor(n: int, batch_size: int) -> float:
    """Seconds per image of the identity embedder alone (dlib's batch descriptor call, one thread), measured in
    this process on ``n`` built-in test faces in batches of ``batch_size``, after one warm-up batch."""
    from audit.step import embed_fixed, single_thread
    from deblur.data import builtin_faces
    from deblur.embed import get_embedder

    faces = builtin_faces(4000, 0).subset("test")
    imgs = [faces.image(i) for i in range(min(n, len(faces)))]
    embedder = get_embedder("dlib")
    with single_thread():
        embed_fixed(embedder, imgs[:batch_size], batch_size)
        start = time.perf_counter()
        embed_fixed(embedder, imgs, batch_size)
    return (time.perf_counter() - start) / len(imgs)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=48, help="faces per engine (the built-in test split has 400)")
    p.add_argument("--workers", type=int, default=os.cpu_count(), help="processes / actors per pool")
    p.add_argument("--engines", nargs="+", default=["sequential", "local", "ray"],
                   choices=["sequential", "local", "ray"])
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--boot", type=int, default=1000, help="bootstrap resamples of the report (the CLI default)")
    p.add_argument("--project", type=int, default=1000, help="project the wall time of this many faces")
    args = p.parse_args(argv)
    models = best_restorers()
    print(f"audit of {args.n} built-in faces; models {models} + none; {KINDS}; batch {args.batch_size}; "
          f"{os.cpu_count()} cores; load average at start {os.getloadavg()[0]:.1f}")
    per_image = embedding_floor(64, args.batch_size)  # first, on a quiet machine (Ray's teardown outlives its row)
    rows = [run("sequential, batch 1", SequentialEngine(), models, args.n, 1, args.boot)]
    for name in args.engines:
        engine = {"sequential": SequentialEngine, "local": lambda: LocalPool(args.workers),
                  "ray": lambda: RayEngine(args.workers)}[name]()
        label = name if name == "sequential" else f"{name}, {args.workers} workers"
        rows.append(run(label, engine, models, args.n, args.batch_size, args.boot))
    base = rows[0]
    print(f"\n{'engine':<22} {'faces':>5} {'wall s':>7} {'faces/s':>8} {'marginal faces/s':>17} "
          f"{'ratio':>6} {f'{args.project} faces':>12}")
    for r in rows:
        # the report's bootstraps grow with the number of rows: scaled linearly
        projected = (r["wall"] + (args.project - r["faces"]) * r["per_face"]
                     + r["report"] * (args.project / r["faces"] - 1))
        verdict = "under 5 min" if projected < TARGET_S else "over 5 min"
        print(f"{r['engine']:<22} {r['faces']:>5} {r['wall']:>7.1f} {r['fps']:>8.2f} {r['marginal_fps']:>17.2f} "
              f"{r['marginal_fps'] / base['marginal_fps']:>5.2f}x {projected / 60:>8.1f} min  ({verdict})")
    embeddings = 1 + 2 * len(KINDS)  # clean, and per degradation the degraded and the restored face ('none' reuses)
    floor = args.project * embeddings * per_image / max(1, args.workers)
    print(f"\nfloor: the dlib descriptor alone takes {per_image * 1000:.0f} ms per image here; {embeddings} "
          f"embeddings per face -> {args.project} faces need {floor / 60:.1f} min of it on {args.workers} cores, "
          f"before any degradation, restoration or report ({'under' if floor < TARGET_S else 'over'} the 5-min "
          "target)")
    print(f"\nload average at the end {os.getloadavg()[0]:.1f} (shared machine: numbers move with other jobs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
