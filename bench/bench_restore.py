"""Time restoring one 128x128 face per shipped model and classical baseline, on CPU.

``python -m bench.bench_restore [--repeats 30] [--threads 2]`` prints, per degradation and restorer, the
median (and 10th/90th percentile) of ``repeats`` single-face ``restore`` calls after warm-up, and the ratio
to the ``none`` and ``bicubic``/``wiener`` baselines measured in the same process.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from deblur import degrade
from deblur.restore import restorers_for


def time_restorer(restorer, img: np.ndarray, strength: float, repeats: int) -> list[float]:
    """Wall-clock seconds of ``repeats`` single-image restores (after two warm-up calls)."""
    for _ in range(2):
        restorer.restore(img, strength)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        restorer.restore(img, strength)
        times.append(time.perf_counter() - t)
    return times


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    rng = np.random.default_rng(0)
    clean = np.clip(rng.normal(0.5, 0.2, (128, 128, 3)), 0, 1).astype(np.float32)
    print(f"CPU, torch {torch.__version__}, {a.threads} threads, median of {a.repeats} single-face restores (128x128)")
    print("| degradation | restorer | median ms | p10-p90 ms | x none | x classical |\n|---|---|---|---|---|---|")
    for kind in degrade.STRENGTHS:
        strength = degrade.STRENGTHS[kind].default
        img = degrade.quantize(degrade.degrade(clean, kind, strength))
        rs = restorers_for(kind, device="cpu", include_unoffered=True)
        res = {}
        for name, r in rs.items():
            t = sorted(time_restorer(r, img, strength, a.repeats))
            res[name] = (statistics.median(t), t[len(t) // 10], t[(9 * len(t)) // 10])
        ref_cls = next((n for n in ("bicubic", "wiener") if n in res), "none")
        for name, (med, p10, p90) in res.items():
            print(f"| {kind} | {name} | {1e3 * med:.2f} | {1e3 * p10:.2f}-{1e3 * p90:.2f} | "
                  f"{med / res['none'][0]:.0f} | {med / res[ref_cls][0]:.1f} ({ref_cls}) |")


if __name__ == "__main__":
    main()
