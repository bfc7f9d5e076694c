"""Time of one anonymise call on a 6-face group photo (CPU), against a detection-only baseline in the same run.

Usage::

    python bench/bench_anonymise.py [--repeats 3]

The photo is :func:`audit.safety.anonymise.example_group_photo` (two real photographs, four generated faces). After a
warm-up call (detector, embedder, restorers, learned attacker and the attackers' cached galleries loaded once,
as in the app), rows are the median of ``--repeats``:

- baseline: face detection only (MTCNN), the floor of any anonymiser;
- anonymise without verification (detect, obscure, paste);
- anonymise with verification (every attacker on every face: the default, what the CLI and the app run).

Wall and process-CPU seconds are printed, with the ratio to the baseline. Target (issue 15): under 10 s.
"""

from __future__ import annotations

import argparse
import statistics
import time

from audit.safety.anonymise import anonymise, example_group_photo
from deblur.faces import detect_faces

TARGET_S = 10.0


def timed(fn, repeats: int) -> tuple[float, float, object]:
    """Median wall and CPU seconds over ``repeats`` calls, and the last result."""
    walls, cpus, out = [], [], None
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus), out


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print the table."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    photo, names = example_group_photo()
    warm = anonymise(photo)  # loads everything and fills the attackers' disk caches
    rows = [("detection only (MTCNN), baseline", *timed(lambda: detect_faces(photo, min_size=12), args.repeats)),
            ("anonymise, no verification", *timed(lambda: anonymise(photo, verify=False), args.repeats)),
            ("anonymise + verification by every attacker", *timed(lambda: anonymise(photo), args.repeats))]
    base = rows[0][1]
    print(f"group photo {photo.shape[1]}x{photo.shape[0]}, {len(names)} people, {len(warm.faces)} faces found; "
          f"median of {args.repeats}")
    print(f"{'step':46s} {'wall s':>8s} {'CPU s':>8s} {'x baseline':>10s}")
    for name, wall, cpu, _ in rows:
        print(f"{name:46s} {wall:8.2f} {cpu:8.2f} {wall / base:10.1f}")
    final = rows[-1][3]
    strengths = [f"{f.kind} {f.strength:g}" for f in final.faces]
    print(f"verdicts: {[f.verdict for f in final.faces]}; strengths: {strengths}")
    print(f"target {TARGET_S:g} s: {'met' if rows[-1][1] < TARGET_S else 'NOT met'} (wall, on this machine now)")


if __name__ == "__main__":
    main()
