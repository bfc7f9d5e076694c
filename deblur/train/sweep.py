"""Reproduce the study's Figure C: six pixelation autoencoders, parameters vs validation MSE vs cost.

``python -m deblur.train.sweep --seconds 90`` trains every :data:`deblur.models.PIX_AE_CONFIGS` architecture on
the same data (built-in train faces, pixelated with a fixed block size, rounded to 8 bits, random 64²
patches), the same optimiser and the same wall-clock budget, one after the other, then writes
``weights/sweep/pix_ae_sweep.csv`` and the figure (``pix_ae_sweep.html`` with plotly, ``pix_ae_sweep.png``
with matplotlib). The study trained a fixed number of epochs and saw time double with parameters; at a
fixed time budget that cost shows up as fewer steps, so the CSV reports both the steps reached and the
measured seconds per 1,000 training patches. The best checkpoint (lowest validation MSE) is copied to
``weights/pix_ae-pixelate.pt`` for the app.
"""

from __future__ import annotations

import argparse
import csv
import shutil
from pathlib import Path

import matplotlib
from plotly.subplots import make_subplots

from deblur.models import PIX_AE_CONFIGS
from deblur.train.loop import TrainConfig, train

__all__ = ["run_sweep", "write_figure"]

FIELDS = ["config", "k1", "k2", "params", "val_mse", "val_psnr", "val_psnr_degraded", "steps", "train_seconds",
          "seconds_per_1k_patches", "test_psnr_block8", "test_psnr_block8_degraded", "test_psnr_block8_classical"]


def run_sweep(out_dir: str | Path = "weights/sweep", seconds: float = 90.0, block: int = 8, seed: int = 0,
              ckpt_dir: str | Path = "/tmp/facedrift-sweep", eval_faces: int = 50) -> list[dict]:
    """Train the six configurations and write the CSV; returns the rows."""
    out_dir, ckpt_dir = Path(out_dir), Path(ckpt_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for cfg_name, (k1, k2) in PIX_AE_CONFIGS.items():
        cfg = TrainConfig(model="pix_ae", degradation="pixelate", strengths=(block, block),
                          model_args={"k1": k1, "k2": k2}, name=f"pix_ae-{cfg_name}", minutes=seconds / 60,
                          lr=1e-3, seed=seed, eval_faces=eval_faces, out=str(ckpt_dir / f"pix_ae-{cfg_name}.pt"))
        ckpt = train(cfg)
        m = ckpt["metrics"]
        t8 = m["test"]["by_strength"][f"{block:g}"] if "test" in m and f"{block:g}" in m["test"]["by_strength"] else {}
        rows.append({
            "config": f"{cfg_name} ({k1},{k2})", "k1": k1, "k2": k2, "params": ckpt["params"],
            "val_mse": round(m["val_mse"], 6), "val_psnr": m["val_psnr"], "val_psnr_degraded": m["val_psnr_degraded"],
            "steps": m["steps"], "train_seconds": ckpt["train_seconds"],
            "seconds_per_1k_patches": round(1000 * ckpt["train_seconds"] / max(1, m["patches_seen"]), 2),
            "test_psnr_block8": t8.get("model", {}).get("psnr"),
            "test_psnr_block8_degraded": t8.get("degraded", {}).get("psnr"),
            "test_psnr_block8_classical": t8.get("classical", {}).get("psnr"),
        })
        print(rows[-1], flush=True)
        with open(out_dir / "pix_ae_sweep.csv", "w", newline="") as f:  # rewrite after each: partial results survive
            w = csv.DictWriter(f, fieldnames=FIELDS)
            w.writeheader()
            w.writerows(rows)
    best = min(rows, key=lambda r: r["val_mse"])
    shutil.copy(ckpt_dir / f"pix_ae-{best['config'].split()[0]}.pt", Path("weights") / "pix_ae-pixelate.pt")
    return rows


def write_figure(rows: list[dict], out_dir: str | Path = "weights/sweep") -> None:
    """Figure C: validation MSE bars per architecture, parameters and cost as lines (HTML + PNG)."""
    out_dir = Path(out_dir)
    labels = [r["config"] for r in rows]
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_bar(x=labels, y=[r["val_mse"] for r in rows], name="validation MSE",
                text=[f"{r['params']:,} params" for r in rows])
    fig.add_scatter(x=labels, y=[r["seconds_per_1k_patches"] for r in rows], name="s per 1k patches",
                    mode="lines+markers", secondary_y=True)
    fig.update_layout(title="Pixelation autoencoders (block 8): parameters double, validation MSE at equal "
                            "training time", xaxis_title="architecture (kernel sizes k1, k2)")
    fig.update_yaxes(title_text="validation MSE", secondary_y=False)
    fig.update_yaxes(title_text="training cost (s / 1,000 patches)", secondary_y=True)
    fig.write_html(out_dir / "pix_ae_sweep.html", include_plotlyjs="cdn")
    matplotlib.use("Agg")  # no display: select the file backend before pyplot is first imported
    import matplotlib.pyplot as plt  # only after matplotlib.use, hence here

    fig, ax = plt.subplots(figsize=(8, 4.2))
    bars = ax.bar(labels, [r["val_mse"] for r in rows], color="#4c72b0")
    for b, r in zip(bars, rows, strict=True):
        ax.text(b.get_x() + b.get_width() / 2, b.get_height(), f"{r['params'] / 1000:.0f}k", ha="center",
                va="bottom", fontsize=8)
    ax.set_ylabel("validation MSE")
    ax.set_xlabel("architecture (kernel sizes k1, k2); bar labels = parameters")
    ax2 = ax.twinx()
    ax2.plot(labels, [r["seconds_per_1k_patches"] for r in rows], "o-", color="#dd8452")
    ax2.set_ylabel("s per 1,000 training patches", color="#dd8452")
    ax.set_title("Figure C reproduced: pixelation AEs at equal training time (block 8)")
    fig.tight_layout()
    fig.savefig(out_dir / "pix_ae_sweep.png", dpi=110)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m deblur.train.sweep", description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=90.0, help="training budget per architecture")
    p.add_argument("--block", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-dir", default="weights/sweep")
    p.add_argument("--figure-only", action="store_true", help="redraw the figure from the existing CSV")
    a = p.parse_args(argv)
    if a.figure_only:
        with open(Path(a.out_dir) / "pix_ae_sweep.csv") as f:
            rows = [{k: (float(v) if k not in ("config",) and v not in ("", None) else v) for k, v in r.items()}
                    for r in csv.DictReader(f)]
    else:
        rows = run_sweep(a.out_dir, a.seconds, a.block, a.seed)
    write_figure(rows, a.out_dir)


if __name__ == "__main__":
    main()
