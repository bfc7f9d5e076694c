"""``python -m deblur.train``: train one model, or ``--ship`` to rebuild the manifest and model cards."""

from __future__ import annotations

import argparse
import json

from deblur import degrade
from deblur.train import __doc__ as train_doc
from deblur.train.loop import TrainConfig, train
from deblur.train.release import ship

__all__ = ["main", "parse_config"]


def parse_config(argv=None) -> TrainConfig | None:
    """The run's :class:`TrainConfig` from the command line, or ``None`` for ``--ship``."""
    p = argparse.ArgumentParser(prog="python -m deblur.train", description=train_doc.split("\n\n")[0])
    d = TrainConfig()
    p.add_argument("--model", default=d.model)
    p.add_argument("--degradation", default=d.degradation, choices=sorted(degrade.STRENGTHS))
    p.add_argument("--strengths", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                   help="strength range in pixels (default: STRENGTHS[degradation].low..high)")
    p.add_argument("--model-args", default="{}", help='JSON keyword arguments, e.g. \'{"upsample": "resize"}\'')
    p.add_argument("--name", default="")
    for key in ("minutes", "lr", "adv_weight", "jpeg", "noise"):
        p.add_argument(f"--{key.replace('_', '-')}", type=float, default=getattr(d, key))
    for key in ("max_steps", "batch", "patch", "seed", "n_faces", "face_seed", "pairs_per_face", "val_faces",
                "eval_faces", "texture"):
        p.add_argument(f"--{key.replace('_', '-')}", type=int, default=getattr(d, key))
    p.add_argument("--loss", default=d.loss, choices=("l1", "mse"))
    p.add_argument("--out", default="")
    p.add_argument("--device", default=None)
    p.add_argument("--ship", action="store_true", help="only rebuild weights/manifest.json and cards from weights/*.pt")
    a = p.parse_args(argv)
    if a.ship:
        return None
    spec = degrade.STRENGTHS[a.degradation]
    strengths = tuple(a.strengths) if a.strengths else (spec.low, spec.high)
    kw = {k: v for k, v in vars(a).items() if k not in ("strengths", "model_args", "ship")}
    return TrainConfig(strengths=strengths, model_args=json.loads(a.model_args), **kw)


def main(argv=None) -> None:
    """Train one model (or rebuild the manifest and cards with ``--ship``)."""
    cfg = parse_config(argv)
    if cfg is None:
        manifest = ship()
        print(f"wrote weights/manifest.json with {len(manifest['models'])} models and their cards")
        return
    ckpt = train(cfg)
    m = ckpt["metrics"]
    print(f"saved {cfg.out}: {ckpt['params']:,} params, {ckpt['train_seconds']:.0f} s, {m['steps']} steps, "
          f"val PSNR {m['val_psnr']:.2f} dB (degraded {m['val_psnr_degraded']:.2f})")
    if "test" in m:
        print(json.dumps(m["test"]["mean"]))


if __name__ == "__main__":
    main()
