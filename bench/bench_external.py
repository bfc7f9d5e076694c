"""Faces per second of an external restorer called in-process vs served by a local Gradio app.

The same restorer function is audited three ways through :mod:`deblur.restore.external` (the path ``--external``
takes): as a Python callable (``module:callable``), and as a Gradio ``Interface`` launched on localhost in a
subprocess (``http://127.0.0.1:PORT/#/predict``), with 1 call in flight and with ``--concurrency`` calls in flight.
Three functions: ``unsharp`` (an OpenCV unsharp mask, ~1 ms: the cost is all transport), ``resunet`` (our
shipped ``resunet-gaussian`` network, non-blind, one torch thread) and ``waits`` (sleeps 0.25 s and returns its
input: a restorer whose time is spent elsewhere, as on a Space's GPU, where concurrency pays). Ratios are
against the in-process callable with one call in flight.

Usage::

    python -m bench.bench_external [--faces 24] [--concurrency 4]

Numbers depend on the machine and its load; the header says what it ran on.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from collections import Counter

import cv2
import numpy as np

from bench.server import ROOT, free_port

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

_RESUNET = {}


def unsharp(img: np.ndarray) -> np.ndarray:
    """A cheap stand-in restorer: unsharp mask on the uint8 face."""
    blurred = cv2.GaussianBlur(img, (0, 0), 2.0)
    return cv2.addWeighted(img, 1.5, blurred, -0.5, 0)


def resunet(img: np.ndarray, kind: str = "gaussian", strength: float | None = None) -> np.ndarray:
    """Our shipped non-blind U-Net for Gaussian blur, behind the external callable interface."""
    if "model" not in _RESUNET:
        import torch

        from deblur.restore import load_restorer

        # one intra-op thread: on a loaded 2-core machine torch's spinning worker threads made a single call
        # ~6x slower (measured 0.7 vs 4-5 faces/s), which would flatter every concurrent row of the table
        torch.set_num_threads(1)
        _RESUNET["model"] = load_restorer("resunet-gaussian")
    return _RESUNET["model"].restore(img.astype(np.float32) / 255.0, strength)


def waits(img: np.ndarray) -> np.ndarray:
    """A restorer whose latency is not our CPU (a remote GPU): 0.25 s of waiting."""
    time.sleep(0.25)
    return img


FUNCTIONS = {"unsharp": (unsharp, False), "resunet": (resunet, True), "waits": (waits, False)}


def serve(name: str, port: int, concurrency: int) -> None:
    """Serve ``unsharp`` or ``resunet`` as a Gradio Interface (blocks; the bench runs it in a subprocess)."""
    import gradio as gr

    fn, nonblind = FUNCTIONS[name]
    inputs = [gr.Image(type="numpy")] + ([gr.Textbox(), gr.Number()] if nonblind else [])
    demo = gr.Interface(fn, inputs, gr.Image(type="numpy", format="png"), api_name="predict")
    demo.queue(default_concurrency_limit=concurrency).launch(server_port=port, quiet=True)


def _launch(name: str, concurrency: int, wait_s: float = 120.0):
    """Start :func:`serve` in its own process (own GIL, like a real app) and wait until it answers."""
    import httpx

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bench.bench_external", "--serve", name, "--port", str(port),
                             "--concurrency", str(concurrency)], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=2).raise_for_status()
            return proc, url
        except httpx.HTTPError:
            if proc.poll() is not None:
                raise RuntimeError(f"the Gradio server for {name} exited with {proc.returncode}") from None
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"the Gradio server for {name} did not answer within {wait_s:g} s")


def _faces_per_second(spec: str, faces: list[np.ndarray], strength: float) -> tuple[float, str]:
    from deblur.restore import close_restorers, external_restorers

    restorers = external_restorers([spec], ["gaussian"])
    restorer = restorers["gaussian"][spec.split("=", 1)[0]]
    given = [strength] * len(faces) if restorer.uses_strength else None
    try:
        restorer.restore_outcomes(faces[:2], None if given is None else given[:2])  # warm-up
        start = time.perf_counter()
        outcomes = restorer.restore_outcomes(faces, given)
        seconds = time.perf_counter() - start
    finally:
        close_restorers(restorers)
    failed = Counter(o.status for o in outcomes if not o.ok)
    return len(faces) / seconds, ", ".join(f"{n} {status}" for status, n in failed.items()) or "0"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print a markdown table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--faces", type=int, default=24, help="built-in test faces per measurement (default 24)")
    ap.add_argument("--concurrency", type=int, default=4, help="calls in flight for the concurrent runs (default 4)")
    ap.add_argument("--serve", choices=tuple(FUNCTIONS), help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        serve(args.serve, args.port, args.concurrency)
        return 0

    from deblur.data import builtin_faces
    from deblur.degrade import degrade, quantize

    strength = 3.0
    clean = builtin_faces(4000, seed=0).subset("test").floats()[: args.faces]
    faces = [quantize(degrade(x, "gaussian", strength)) for x in clean]
    print(f"{platform.machine()} CPU ({os.cpu_count()} cores visible, load average {os.getloadavg()[0]:.1f}), "
          f"{args.faces} faces 128x128 per measurement, "
          f"gaussian sigma={strength:g}; Gradio app in a subprocess on localhost")
    print("\n| restorer | path | calls in flight | faces/s | x in-process | failed |\n|---|---|---|---|---|---|")
    module = "bench.bench_external"
    for name, (fn, nonblind) in FUNCTIONS.items():
        opts = "?nonblind" if nonblind else "?"
        base, failed = _faces_per_second(f"a={module}:{fn.__name__}{opts},concurrency=1", faces, strength)
        print(f"| {fn.__name__} | in-process callable | 1 | {base:.1f} | 1.00 | {failed} |")
        rate, failed = _faces_per_second(f"b={module}:{fn.__name__}{opts},concurrency={args.concurrency}", faces,
                                         strength)
        print(f"| {fn.__name__} | in-process callable | {args.concurrency} | {rate:.1f} | {rate / base:.2f} | "
              f"{failed} |")
        proc, url = _launch(name, args.concurrency)
        try:
            for n in (1, args.concurrency):
                rate, failed = _faces_per_second(f"c={url}#/predict{opts},concurrency={n}", faces, strength)
                print(f"| {fn.__name__} | local Gradio app | {n} | {rate:.1f} | {rate / base:.2f} | {failed} |")
        finally:
            proc.terminate()
            proc.wait(30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
