"""Time of one "Is this blur safe?" sweep over one face on CPU, against an embedding-only baseline.

Usage::

    python -m bench.bench_safety [--repeats 2] [--photo examples/generated-1.png] [--thorough]

Everything runs in one process after a warm-up sweep (gallery, restorers and the embedder loaded once, as in
the app). Rows, median of ``--repeats``:

- baseline: embedding the face crop as many times as the sweep embeds distinct images (the dlib ResNet is
  the floor of any sweep that judges identity with it);
- the sweep of each obscuring kind on its own, and the whole default sweep (the app's request);
- with ``--thorough``, the whole sweep with Richardson–Lucy as well.

Wall seconds and process CPU seconds are both printed: on a shared machine the wall time includes waiting for
the CPU; the CPU time is what the sweep needs. Target (issue 7): under 10 s per face on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from audit import safety
from deblur.io import load_image
from deblur.strengths import SAFETY_GRID

TARGET_S = 10.0


def timed(fn) -> tuple[float, float, object]:
    """``(wall s, CPU s, result)`` of one call."""
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w0, time.process_time() - c0, out


def median_run(fn, repeats: int) -> tuple[float, float, object]:
    """Median wall and CPU seconds over ``repeats`` calls, and the last result."""
    walls, cpus, out = [], [], None
    for _ in range(repeats):
        w, c, out = timed(fn)
        walls.append(w)
        cpus.append(c)
    return statistics.median(walls), statistics.median(cpus), out


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photo", default=str(Path(__file__).resolve().parent.parent / "examples" / "generated-1.png"))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--thorough", action="store_true", help="also time the sweep with Richardson-Lucy")
    args = parser.parse_args(argv)

    from deblur.embed import get_embedder

    load = os.getloadavg()[0]
    crop = load_image(args.photo)
    embedder = get_embedder("dlib")
    gallery = safety.builtin_gallery()
    sweep = lambda **kw: safety.sweep_face(crop, gallery=gallery, embedder=embedder, **kw)  # noqa: E731
    warm = sweep()  # warm-up: restorers, torch, caches
    n_emb = warm.n_embeddings

    rows: list[tuple[str, int, float, float]] = []
    w, c, _ = median_run(lambda: [embedder.embed(crop) for _ in range(n_emb)], args.repeats)
    rows.append((f"baseline: {n_emb} dlib embeddings only", n_emb, w, c))
    base_w, base_c = w, c
    for kind in safety.KINDS:
        w, c, res = median_run(lambda k=kind: sweep(degradations=[k]), args.repeats)
        rows.append((f"sweep {kind} {list(SAFETY_GRID[kind])}", res.n_embeddings, w, c))
    w, c, res = median_run(sweep, args.repeats)
    rows.append(("TOTAL default sweep (the app's request)", res.n_embeddings, w, c))
    total_w, total_c = w, c
    if args.thorough:
        w, c, res_t = median_run(lambda: sweep(thorough=True), args.repeats)
        rows.append(("TOTAL thorough sweep (+ Richardson-Lucy)", res_t.n_embeddings, w, c))

    restorers = sorted(set(res.table["restorer"]))
    print(f"photo {args.photo}, 128-px crop, gallery {len(gallery.ids)} faces, restorers {restorers}, "
          f"excluded {list(res.excluded)}; median of {args.repeats} after a warm-up; {os.cpu_count()} cores, "
          f"load average {load:.1f} at start")
    width = max(len(r[0]) for r in rows)
    print(f"  {'':<{width}}  {'embeds':>6}  {'wall s':>7}  {'CPU s':>7}  {'wall/base':>9}")
    for name, n, w, c in rows:
        print(f"  {name:<{width}}  {n:6d}  {w:7.2f}  {c:7.2f}  {w / base_w:9.2f}")
    verdict = "under" if total_w < TARGET_S else "OVER"
    print(f"default sweep: {total_w:.1f} s wall ({verdict} the {TARGET_S:g} s target), {total_c:.1f} s CPU; "
          f"{total_w / base_w:.2f}x the embedding-only baseline (CPU {total_c / base_c:.2f}x)")
    print("recommended:", {k: r.strength for k, r in res.recommendations.items()})


if __name__ == "__main__":
    main()
