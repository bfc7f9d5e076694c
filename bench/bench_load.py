"""Load on the launched app: N concurrent playground requests against one request, and server memory.

Usage::

    python -m bench.bench_load [--concurrent 20] [--single 3] [--bad-rounds 4] [--investigate]

Starts ``python app.py`` on 127.0.0.1 in its own process (own temp folders), then, in this order:

1. one warm-up request (loads restorers, detector, embedder), server RSS before and after;
2. ``--single`` requests one after another: the baseline latency, in the same run;
3. ``--concurrent`` requests at once, each from its own ``gradio_client`` (a user each, with a photo of
   their own: the astronaut example with one pixel changed per user), timed from submit to answer;
4. ``--bad-rounds`` rounds of inputs that fail (text renamed .png, a 10000×10000 bomb, a 12-px image,
   a photo without a face, a zip with a bad CRC) plus one large valid photo (24 MP), server RSS per round.

Prints errors, p50/p95/max latency and their ratio to the single request, and RSS before/after.
``--investigate`` then repeats step 4 *in this process* on the handlers, with ``tracemalloc`` (Python
allocations) and glibc's ``malloc_trim`` (memory glibc holds but Python freed): growth that ``tracemalloc``
sees is a leak; growth that ``malloc_trim`` gives back is the allocator keeping freed memory.
Every request has a timeout, so the run is bounded.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import ctypes
import gc
import io
import statistics
import tempfile
import time
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
from gradio_client import Client, handle_file
from PIL import Image

from bench.server import ROOT, app_process, rss_mb

EXAMPLES = ROOT / "examples"
TIMEOUT_S = 600


def user_photo(folder: Path, user: int) -> Path:
    """The astronaut example with one pixel changed: each simulated user uploads a photo of their own."""
    img = np.asarray(Image.open(EXAMPLES / "astronaut.png").convert("RGB")).copy()
    img[0, 0] = (user % 256, (user // 256) % 256, 77)
    path = folder / f"user-{user}.png"
    Image.fromarray(img).save(path)
    return path


def bad_inputs(folder: Path) -> dict[str, Path]:
    """Inputs a session of mistakes sends: each must fail with a message, except ``large`` (24 MP, works)."""
    files = {"text": folder / "text.png", "bomb": folder / "bomb.png", "tiny": folder / "tiny.png",
             "noface": folder / "noface.png", "large": folder / "large.jpg", "badzip": folder / "bad.zip"}
    files["text"].write_text("not an image\n")
    Image.new("1", (10_000, 10_000)).save(files["bomb"])
    Image.open(EXAMPLES / "astronaut.png").convert("RGB").resize((12, 12)).save(files["tiny"])
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((300, 400, 3)) * 40 + 100).astype(np.uint8)).save(files["noface"])
    Image.open(EXAMPLES / "astronaut.png").convert("RGB").resize((6000, 4000)).save(files["large"], quality=90)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for i in range(3):
            zf.write(EXAMPLES / f"generated-{i}.png", f"face{i}.png")
    data = bytearray(buf.getvalue())
    data[data.index(b"\x89PNG", data.index(b"face1.png")) + 200] ^= 0xFF
    files["badzip"].write_bytes(bytes(data))
    return files


def playground(client: Client, photo: Path, mode: str = "face", kind: str = "gaussian", strength: float = 3.0):
    return client.predict(handle_file(str(photo)), mode, "clean", kind, strength, api_name="/playground")


def timed(call) -> tuple[float, str | None]:
    start = time.perf_counter()
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - counted and reported
        return time.perf_counter() - start, f"{type(exc).__name__}: {str(exc)[:120]}"
    return time.perf_counter() - start, None


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def bad_round(url: str, files: dict[str, Path]) -> list[str]:
    """One round of bad inputs through a fresh client; returns the error messages (the large photo must work)."""
    client = Client(url, verbose=False, download_files=False)
    messages = []
    for name in ("text", "bomb", "tiny", "noface"):
        _, err = timed(lambda n=name: playground(client, files[n]))
        messages.append(f"{name}: {err}")
    _, err = timed(lambda: playground(client, files["large"], mode="whole"))
    messages.append(f"large: {err or 'ok'}")
    _, err = timed(lambda: client.predict(["none"], ["gaussian"], "gaussian=4", 3, 0, "dlib",
                                          handle_file(str(files["badzip"])), None, "builtin", api_name="/audit"))
    messages.append(f"badzip: {err}")
    return messages


def investigate(files: dict[str, Path], rounds: int) -> None:
    """Bad-input rounds on the handlers in this process: Python allocations vs RSS vs RSS after malloc_trim."""
    import os

    from ui import audit_tab
    from ui.playground import playground_request

    pid = os.getpid()
    libc = ctypes.CDLL("libc.so.6")

    def call(fn, *args):
        try:
            fn(*args)
        except Exception:  # noqa: BLE001, S110 - the bad inputs are meant to fail
            pass

    def one_round():
        for name in ("text", "bomb", "tiny", "noface"):
            call(playground_request, str(files[name]), "face", "clean", "gaussian", 3.0)
        call(playground_request, str(files["large"]), "whole", "clean", "gaussian", 3.0)
        call(app_handlers_audit, files["badzip"])

    def app_handlers_audit(zpath: Path):
        with tempfile.TemporaryDirectory() as work:
            audit_tab.run_audit_request(["none"], ["gaussian"], "gaussian=4", 3, 0, "dlib", zpath.read_bytes(),
                                           None, work=Path(work))

    call(playground_request, str(EXAMPLES / "generated-0.png"), "face", "clean", "gaussian", 3.0)  # load models
    one_round()  # first touch of every path (lazy imports, caches)
    gc.collect()
    tracemalloc.start()
    base_rss, base_py = rss_mb(pid), tracemalloc.get_traced_memory()[0] / 2**20
    print(f"\nIn-process, after warm-up: RSS {base_rss:.0f} MB")
    print("| round | RSS (MB) | RSS growth | Python-traced growth (MB) |")
    print("|---|---|---|---|")
    for r in range(1, rounds + 1):
        one_round()
        gc.collect()
        traced = tracemalloc.get_traced_memory()[0] / 2**20 - base_py
        print(f"| {r} | {rss_mb(pid):.0f} | {rss_mb(pid) - base_rss:+.0f} | {traced:+.1f} |")
    before_trim = rss_mb(pid)
    libc.malloc_trim(0)
    print(f"malloc_trim(0): RSS {before_trim:.0f} -> {rss_mb(pid):.0f} MB (memory glibc kept after Python freed it)")
    tracemalloc.stop()


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print its tables."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--concurrent", type=int, default=20)
    ap.add_argument("--single", type=int, default=3)
    ap.add_argument("--bad-rounds", type=int, default=4)
    ap.add_argument("--investigate", action="store_true", help="repeat the bad rounds in-process with tracemalloc")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="facedrift-bench-") as tmp:
        folder = Path(tmp)
        photos = folder / "photos"
        photos.mkdir()
        files = bad_inputs(photos)
        with app_process(folder / "server") as app:
            rss = {"idle, just started": app.rss_mb()}
            client = Client(app.url, verbose=False, download_files=False)
            cold, err = timed(lambda: playground(client, user_photo(photos, 0)))
            assert err is None, err
            rss["after the first request (models loaded)"] = app.rss_mb()
            single = [timed(lambda i=i: playground(client, user_photo(photos, 1000 + i)))[0]
                      for i in range(args.single)]
            user_files = [user_photo(photos, i + 1) for i in range(args.concurrent)]
            clients = [Client(app.url, verbose=False, download_files=False) for _ in user_files]
            start = time.perf_counter()
            with cf.ThreadPoolExecutor(args.concurrent) as pool:
                futures = [pool.submit(timed, lambda c=c, p=p: playground(c, p))
                           for c, p in zip(clients, user_files, strict=True)]
                results = [f.result(timeout=TIMEOUT_S) for f in futures]
            wall = time.perf_counter() - start
            rss[f"after {args.concurrent} concurrent requests"] = app.rss_mb()
            latencies = [t for t, e in results if e is None]
            errors = [e for _, e in results if e is not None]
            bad_rss, messages = [], []
            for _ in range(args.bad_rounds):
                messages = bad_round(app.url, files)
                bad_rss.append(app.rss_mb())
            rss[f"after {args.bad_rounds} rounds of bad inputs"] = app.rss_mb()
            app.stop()
    one = statistics.median(single)
    print(f"Load on the launched app (python app.py, queue of 2), {args.concurrent} concurrent playground requests "
          f"(face crop, Gaussian σ 3, every restorer), each from its own client with its own photo.\n")
    print("| measure | seconds | × single request |")
    print("|---|---|---|")
    print(f"| first request (cold: loads models) | {cold:.2f} | {cold / one:.1f} |")
    print(f"| single request, warm (median of {args.single}) | {one:.2f} | 1.0 |")
    for q in (50, 95):
        print(f"| {args.concurrent} concurrent: p{q} | {percentile(latencies, q):.2f} | "
              f"{percentile(latencies, q) / one:.1f} |")
    print(f"| {args.concurrent} concurrent: max | {max(latencies, default=float('nan')):.2f} | "
          f"{max(latencies, default=float('nan')) / one:.1f} |")
    print(f"| {args.concurrent} concurrent: wall, all answered | {wall:.2f} | {wall / one:.1f} |")
    print(f"\nErrors: {len(errors)} of {args.concurrent}" + "".join(f"\n  {e}" for e in errors[:5]))
    print(f"Throughput: {len(latencies) / wall:.2f} requests/s (single request: {1 / one:.2f}/s)\n")
    print("| server RSS | MB |")
    print("|---|---|")
    for what, mb in rss.items():
        print(f"| {what} | {mb:.0f} |")
    print("\nRSS after each round of bad inputs: " + ", ".join(f"{mb:.0f}" for mb in bad_rss) + " MB")
    print("Last round's answers:\n  " + "\n  ".join(messages))
    if args.investigate:
        investigate(files, args.bad_rounds)


if __name__ == "__main__":
    main()
