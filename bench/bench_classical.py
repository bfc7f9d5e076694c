"""Median milliseconds per 128² face for every classical restorer, with the ratio to ``none``.

Usage::

    python -m bench.bench_classical [--faces 8] [--repeats 3] [--threads 1]

Numbers depend on the machine and its load; the table says what it ran on.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print a markdown table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--faces", type=int, default=8, help="built-in test faces to time (default 8)")
    ap.add_argument("--repeats", type=int, default=3, help="timed passes over the faces (default 3)")
    ap.add_argument("--threads", type=int, default=1, help="BLAS/FFT threads (default 1)")
    args = ap.parse_args(argv)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)

    from deblur.data import builtin_faces
    from deblur.degrade import STRENGTHS, degrade, quantize
    from deblur.restore.classical import classical_estimate, classical_restorers

    clean = builtin_faces(4000, seed=0).subset("test").floats()[: args.faces]
    print(f"{platform.machine()} CPU ({os.cpu_count()} cores visible), {args.threads} thread(s), "
          f"{args.faces} faces x {args.repeats} repeats, 128x128, default strengths")
    print("\n| degradation | strength | restorer | median ms/face | x none |\n|---|---|---|---|---|")
    for kind, spec in STRENGTHS.items():
        strength = spec.default
        degraded = [quantize(degrade(x, kind, strength)) for x in clean]
        timed = {name: (lambda y, r=r, s=strength: r.restore(y, s)) for name, r in classical_restorers(kind).items()}
        timed["classical_estimate"] = lambda y, k=kind, s=strength: classical_estimate(y, k, s)
        medians = {}
        for name, fn in timed.items():
            fn(degraded[0])  # warm-up (imports, FFT plans)
            samples = []
            for _ in range(args.repeats):
                for y in degraded:
                    t0 = time.perf_counter()
                    fn(y)
                    samples.append((time.perf_counter() - t0) * 1000.0)
            medians[name] = statistics.median(samples)
        for name, ms in medians.items():
            print(f"| {kind} | {strength:g} | `{name}` | {ms:.2f} | {ms / medians['none']:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
