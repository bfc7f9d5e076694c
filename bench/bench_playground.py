"""Latency of one playground request on CPU: a 128×128 face crop, every restorer, metrics included.

Usage::

    python -m bench.bench_playground [--repeats 5] [--threads 2] [--photo examples/generated-0.png]

Prints, per degradation, a table of median milliseconds: the baseline (read the upload, degrade, quantize:
what the first version of the app did), face detection + crop, each restorer, the metrics (PSNR/SSIM + dlib
identity embeddings) and the whole request, all in the same process after one warm-up request (models and the
detector are loaded once per process, as in the app). Target (issue 6): under 1 s per request on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from deblur import degrade as D
from deblur.faces import CROP_SIZE
from deblur.io import load_image
from deblur.playground import metrics_table, prepare
from ui.common import EXAMPLES_DIR
from ui.playground import run_playground
from ui.uploads import read_photo


def _ms(seconds: list[float]) -> float:
    return 1000 * statistics.median(seconds)


def bench_kind(photo: str, kind: str, repeats: int) -> list[tuple[str, float]]:
    """Median timings (ms) of the parts of one playground request for degradation ``kind``."""
    strength = D.STRENGTHS[kind].default
    run_playground(photo, "face", "clean", kind, strength)  # warm-up: loads models, detector, embedder
    base, crop, total, metrics = [], [], [], []
    per_restorer: dict[str, list[float]] = {}
    for _ in range(repeats):
        t0 = time.perf_counter()
        D.quantize(D.degrade(load_image(photo), kind, strength))
        base.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        prepare(read_photo(photo), "face")
        crop.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        result = run_playground(photo, "face", "clean", kind, strength)
        total.append(time.perf_counter() - t0)
        for rec in result.reconstructions:
            per_restorer.setdefault(rec.label, []).append(rec.seconds)
        t0 = time.perf_counter()
        metrics_table(result, prepare(read_photo(photo), "face"), "face")
        metrics.append(time.perf_counter() - t0 - crop[-1])  # minus the re-crop it needed
    rows = [("baseline: read + degrade + quantize", _ms(base)), ("read + face detection + crop", _ms(crop))]
    rows += [(f"restorer: {label}", _ms(times)) for label, times in per_restorer.items()]
    rows += [("metrics: PSNR/SSIM + dlib identity", _ms(metrics)), ("TOTAL one request", _ms(total))]
    return rows


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print one table per degradation."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photo", default=str(EXAMPLES_DIR / "generated-0.png"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch/OpenCV threads per request (the app uses cores / concurrency limit)")
    args = parser.parse_args(argv)

    import cv2
    import torch

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    print(f"photo {args.photo}, face crop {CROP_SIZE}×{CROP_SIZE}, {args.threads} thread(s), "
          f"median of {args.repeats} after a warm-up, torch {torch.__version__}, CPU, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f} at start")
    for kind in D.STRENGTHS:
        rows = bench_kind(args.photo, kind, args.repeats)
        print(f"\n{kind} (strength {D.STRENGTHS[kind].default:g})")
        width = max(len(name) for name, _ in rows)
        for name, ms in rows:
            print(f"  {name:<{width}}  {ms:8.1f} ms")
        total, base = rows[-1][1], rows[0][1]
        verdict = "under" if total < 1000 else "OVER"
        print(f"  {'overhead vs baseline':<{width}}  {total - base:8.1f} ms   (total {verdict} 1 s)")


if __name__ == "__main__":
    main()
