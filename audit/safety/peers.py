"""Peers measured with our attackers: does ``deface`` (PyPI, CenterFace detector) leave people re-identifiable?

``python -m audit.safety --peers deface --out results/peers`` writes ``peers.csv`` (one row per face, tool
setting, face size and attacker) and ``peers_summary.csv`` (re-identification rate per setting and size).

How: every face (built-in test faces outside the attackers' gallery, plus real photographs) is placed at the
centre of a grey scene at a given face size (the 128-px aligned crop resized to ``size`` px), the tool runs
on the scene (``deface`` as its own command line, so it may live in another virtual environment), and the
crop is cut back out and resized to 128 px: that is the probe. The same is done to the attackers' gallery
faces and to the person's re-captured second view, so the parrot sees a gallery obscured by the same tool.
Each deface mode is handed to the attackers as its nearest kind of ours, with the strength converted to
pixels of the 128-px crop (``mosaic`` → ``pixelate`` at ``mosaicsize × 128 / size``; ``blur`` → ``gaussian``
at σ = 12, a box of half the face box is far stronger; ``solid`` → ``fill``). Our own anonymiser runs on the
same scenes (:func:`audit.safety.anonymise.anonymise`, verified).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from audit.safety.anonymise import anonymise
from audit.safety.attackers import attack_context, builtin_candidates, default_attackers, default_fill_attackers
from deblur.degrade import as_image, quantize, to_uint8
from deblur.io import load_image, save_png

__all__ = ["DEFACE_MODES", "SIZES", "measure_peers", "run_deface"]

DEFACE_MODES = {"blur (default)": [], "mosaic (default size 20)": ["--replacewith", "mosaic"],
                "solid": ["--replacewith", "solid"]}
SIZES = (64, 160, 320)  # side of the 128-px aligned crop in the scene: deface's 20-px mosaic = 40, 16, 8 crop px
MOSAIC = 20


def _scene(crop: np.ndarray, size: int) -> np.ndarray:
    """The crop resized to ``size`` px at the centre of a ``3 size`` mid-grey scene."""
    face = cv2.resize(as_image(crop), (size, size), interpolation=cv2.INTER_AREA if size < 128 else cv2.INTER_CUBIC)
    scene = np.full((3 * size, 3 * size, 3), 0.5, np.float32)
    scene[size:2 * size, size:2 * size] = np.clip(face, 0, 1)
    return scene


def _cut(scene: np.ndarray, size: int) -> np.ndarray:
    face = as_image(scene)[size:2 * size, size:2 * size]
    out = cv2.resize(face, (128, 128), interpolation=cv2.INTER_CUBIC if size < 128 else cv2.INTER_AREA)
    return quantize(np.clip(out, 0, 1))  # cubic interpolation overshoots


def run_deface(images: Sequence[np.ndarray], args: Sequence[str], deface: str = "deface") -> list[np.ndarray]:
    """Run the ``deface`` command line on images (one call, so its model loads once); outputs in order.

    Raises:
        FileNotFoundError: when ``deface`` is not on the PATH (``pip install deface==1.5.0``, or give the
            path of a deface in another virtual environment).
        RuntimeError: when deface fails (its stderr is included).
    """
    # pip puts deface's console script beside this interpreter, which may not be on the PATH (a venv not activated)
    exe = (shutil.which(deface) or shutil.which(deface, path=str(Path(sys.executable).parent))
           or (deface if Path(deface).is_file() else None))
    if exe is None:
        raise FileNotFoundError(f"the deface command {deface!r} was not found: pip install deface==1.5.0 or pass "
                                "--deface /path/to/venv/bin/deface")
    with tempfile.TemporaryDirectory(prefix="facedrift-deface-") as tmp:
        paths = [save_png(img, Path(tmp) / f"{i:05d}.png") for i, img in enumerate(images)]
        proc = subprocess.run([exe, *map(str, paths), *args], capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            raise RuntimeError(f"deface failed ({proc.returncode}): {proc.stderr[-2000:]}")
        return [load_image(p.with_name(p.stem + "_anonymized.png")) for p in paths]


def _key(img: np.ndarray) -> bytes:
    return hashlib.blake2b(to_uint8(img).tobytes(), digest_size=16).digest()


def measure_peers(probes: Sequence[tuple[str, np.ndarray]], *, sizes: Sequence[int] = SIZES, deface: str = "deface",
                  n_gallery: int = 20, with_ours: bool = True, seed: int = 0, progress=print) -> pd.DataFrame:
    """Re-identification of deface's modes (and our anonymiser) by every attacker, per face size.

    Args:
        probes: ``(name, 128-px aligned clean crop)`` of the people to protect.
        sizes: face sizes in the scene (px).
        deface: the deface executable.
        n_gallery: candidates in the attackers' gallery (built-in test faces).
        with_ours: also run :func:`audit.safety.anonymise.anonymise` on the same scenes.

    Returns:
        One row per probe × tool setting × size × attacker row: ``tool, setting, size, face, attacker,
        restorer, distance, threshold, rank1, reidentified, detected`` (``detected``: the tool changed the face).
    """

    candidates = builtin_candidates(n_gallery)
    contexts = {name: attack_context(crop, seed=seed, candidates=candidates, fill="black") for name, crop in probes}
    rows = []
    for size in sizes:
        block = max(1, round(MOSAIC * 128 / size))
        modes = {"blur (default)": ("gaussian", 12.0), "mosaic (default size 20)": ("pixelate", float(block)),
                 "solid": ("fill", 1.0)}
        for setting, args in DEFACE_MODES.items():
            kind, strength = modes[setting]
            progress(f"deface {setting}, faces of {size} px")
            # everything the attackers will obscure: probes, their second views, the gallery candidates
            sources = [c for _, c in probes] + [ctx.reference for ctx in contexts.values()] + list(
                candidates.images.astype(np.float32) / 255.0)
            outs = run_deface([_scene(s, size) for s in sources], args, deface)
            table = {_key(quantize(s)): _cut(o, size) for s, o in zip(sources, outs, strict=True)}

            def by_deface(img, _kind, _s, seed=0, table=table):
                return table[_key(quantize(img))]

            attackers = default_fill_attackers(False) if kind == "fill" else default_attackers([kind], disk_cache=False)
            for name, crop in probes:
                ctx = contexts[name]
                ctx_tool = dataclasses.replace(ctx, obscure=by_deface, cache={})
                probe = table[_key(quantize(crop))]
                detected = bool(np.abs(probe - _cut(_scene(crop, size), size)).max() > 2 / 255)
                for a in attackers:
                    for r in a.attack(kind, [strength], [probe], ctx_tool):
                        rows.append({"tool": "deface 1.5.0", "setting": setting, "size": size, "face": name,
                                     "attacker": a.name, "detected": detected, "applied": f"~{kind} {strength:g}",
                                     **r})
        if with_ours:
            progress(f"ours (anonymise, verified), faces of {size} px")
            for name, crop in probes:
                res = anonymise(_scene(crop, size), seed=seed,
                                context=functools.partial(attack_context, seed=seed, candidates=candidates,
                                                          fill="black"))
                centre = [f for f in res.faces if f.box[0] < 2 * size and f.box[2] > size]
                setting = "default (pixelate+noise ladder 8/12/16, else black fill; verified)"
                if not centre:  # not detected: left as it was, re-identified by definition
                    rows.append({"tool": "facedrift anonymise", "setting": setting, "size": size, "face": name,
                                 "attacker": "none (face missed)", "detected": False, "applied": "nothing",
                                 "distance": np.nan, "threshold": np.nan, "rank1": True, "status": "missed"})
                    continue
                face = centre[0]  # its own verification: every attacker on the face cut from the output photo
                for r in ([] if face.rows is None else face.rows.to_dict(orient="records")):
                    rows.append({"tool": "facedrift anonymise", "setting": setting, "size": size, "face": name,
                                 "detected": True, "applied": f"{face.kind} {face.strength:g}", **r})
    df = pd.DataFrame(rows)
    df["reidentified"] = (df["distance"] <= df["threshold"]).fillna(False) | df["rank1"].astype(bool)
    return df


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    """Per tool, setting and face size: faces re-identified by ANY attacker, and by which attackers."""
    per_face = df.groupby(["tool", "setting", "size", "face"]).apply(
        lambda g: pd.Series({"reidentified": bool(g["reidentified"].any()),
                             "by": ", ".join(sorted(g.loc[g["reidentified"], "attacker"].unique())),
                             "detected": bool(g["detected"].all())}), include_groups=False).reset_index()
    out = per_face.groupby(["tool", "setting", "size"]).agg(
        faces=("face", "size"), reidentified=("reidentified", "sum"), detected=("detected", "sum"),
        attackers=("by", lambda s: ", ".join(sorted({a for x in s for a in x.split(", ") if a})))).reset_index()
    return out
