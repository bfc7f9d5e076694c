"""Shipped weights: the manifest matches the files, every model loads on CPU, and they actually restore."""

from __future__ import annotations

import json
import os
import re
import shutil

import numpy as np
import pytest
import torch

from deblur import degrade
from deblur.models import MODELS
from deblur.restore import (
    WEIGHTS_DIR,
    LearnedRestorer,
    WeightsError,
    clear_cache,
    load_checkpoint,
    load_manifest,
    load_restorer,
    manifest,
    restorers_for,
    sha256_file,
)

MANIFEST = load_manifest(WEIGHTS_DIR)["models"]
pytestmark = pytest.mark.skipif(not MANIFEST, reason="no weights/manifest.json yet")


def test_manifest_matches_files():
    for name, entry in MANIFEST.items():
        path = WEIGHTS_DIR / entry["file"]
        assert path.is_file(), f"{name}: {path} missing"
        assert sha256_file(path) == entry["sha256"], f"{name}: sha256 differs from manifest (run --ship)"
        assert path.stat().st_size < 10 * 1024 * 1024
        assert (WEIGHTS_DIR / entry["card"]).is_file()
        for key in ("model", "model_args", "degradation", "strengths", "params", "data", "train_seconds", "device",
                    "metrics"):
            assert key in entry, f"{name} lacks {key}"
        assert entry["metrics"]["test"]["by_strength"]
    on_disk = {p.name for p in WEIGHTS_DIR.glob("*.pt")}
    assert on_disk == {e["file"] for e in MANIFEST.values()}, "weights/*.pt and manifest.json disagree"


def test_every_model_in_MODELS_is_shipped_and_loads_on_cpu(monkeypatch):
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    shipped = {e["model"] for e in MANIFEST.values()}
    assert set(MODELS) <= shipped, f"no weights for {set(MODELS) - shipped}"
    for name in MANIFEST:
        r = LearnedRestorer(WEIGHTS_DIR / MANIFEST[name]["file"], device="cpu")
        assert r.model.training is False and next(r.model.parameters()).device.type == "cpu"
    assert calls and all(c is True for c in calls), "checkpoints must be loaded with weights_only=True"


def test_manifest_is_json_with_metrics_vs_baselines():
    data = json.loads((WEIGHTS_DIR / "manifest.json").read_text())
    for entry in data["models"].values():
        row = next(iter(entry["metrics"]["test"]["by_strength"].values()))
        assert {"degraded", "classical", "model"} <= set(row)


def test_restorers_for_offers_shipped_models():
    for kind in degrade.STRENGTHS:
        rs = restorers_for(kind)  # verified against the manifest on every load
        shipped = {n for n, e in MANIFEST.items() if e["degradation"] == kind and e["offer"]}
        assert shipped <= set(rs) and "none" in rs


@pytest.fixture(scope="module")
def heldout_faces(tmp_path_factory):
    """Faces from generator seed 1: never seen in training (the weights were trained on seed 0)."""
    from deblur import data

    old = os.environ.get("FACEDRIFT_CACHE")
    os.environ["FACEDRIFT_CACHE"] = str(tmp_path_factory.mktemp("heldout"))
    try:
        return data.builtin_faces(n=6, seed=1).floats()
    finally:
        if old is None:
            os.environ.pop("FACEDRIFT_CACHE")
        else:
            os.environ["FACEDRIFT_CACHE"] = old


def _psnr(a, b):
    return 10 * np.log10(1.0 / np.mean((a.astype(np.float64) - b) ** 2))


@pytest.mark.parametrize("name", sorted(n for n, e in MANIFEST.items() if e.get("offer", True)))
def test_offered_model_beats_the_degraded_input(name, heldout_faces):
    entry = MANIFEST[name]
    kind = entry["degradation"]
    lo, hi = entry["strengths"]
    strength = float(np.clip(degrade.STRENGTHS[kind].default, lo, hi))
    r = LearnedRestorer(WEIGHTS_DIR / entry["file"], device="cpu")
    deg = np.stack([degrade.quantize(degrade.degrade(f, kind, strength)) for f in heldout_faces])
    out = r.restore_batch(deg, [strength] * len(deg))
    gain = np.mean([_psnr(o, f) - _psnr(d, f) for o, d, f in zip(out, deg, heldout_faces, strict=True)])
    assert gain > 0, f"{name} is {gain:.2f} dB worse than its input at strength {strength}"


def test_unoffered_models_are_the_ones_that_lose_to_their_input():
    for name, entry in MANIFEST.items():
        mean = entry["metrics"]["test"]["mean"]
        assert entry["offer"] == (mean["model"]["psnr"] > mean["degraded"]["psnr"]), name
        if not entry["offer"]:
            assert name not in restorers_for(entry["degradation"])
            assert name in restorers_for(entry["degradation"], include_unoffered=True)


def test_checkpoints_carry_training_metadata():
    for entry in MANIFEST.values():
        ckpt = load_checkpoint(WEIGHTS_DIR / entry["file"])
        assert {"train_config", "metrics", "train_seconds", "device"} <= set(ckpt)


def test_tampered_weights_are_refused_with_the_file_name(tmp_path):
    """One flipped byte in a copy of weights/: every load path refuses it and names the file (issue 13)."""
    copy = tmp_path / "weights"
    shutil.copytree(WEIGHTS_DIR, copy)
    name, entry = next((n, e) for n, e in MANIFEST.items() if e["degradation"] == "motion" and e["offer"])
    target = copy / entry["file"]
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match=re.escape(str(target)) + ".*git checkout"):
        restorers_for("motion", weights_dir=copy, device="cpu")
    with pytest.raises(WeightsError, match=re.escape(entry["file"])):
        load_restorer(name, weights_dir=copy, device="cpu")
    with pytest.raises(WeightsError, match=re.escape(entry["file"])):
        LearnedRestorer(target, device="cpu")
    # the untouched files of the same copy still load, verified
    other = next(e for e in MANIFEST.values() if e["degradation"] == "gaussian" and e["offer"])
    assert LearnedRestorer(copy / other["file"], device="cpu").verified


def test_verification_hashes_each_file_once_per_process(monkeypatch, tmp_path):
    copy = tmp_path / "weights"
    shutil.copytree(WEIGHTS_DIR, copy)
    hashed = []
    real = manifest.sha256_file
    monkeypatch.setattr(manifest, "sha256_file", lambda path: hashed.append(path) or real(path))
    first = restorers_for("gaussian", weights_dir=copy, device="cpu")
    clear_cache()  # built again from the file, but its hash is remembered
    second = restorers_for("gaussian", weights_dir=copy, device="cpu")
    learned = [n for n, r in first.items() if r.family == "learned"]
    assert learned and len(hashed) == len(learned)
    assert all(second[n].verified and second[n] is not first[n] for n in learned)
    assert restorers_for("gaussian", weights_dir=copy, device="cpu")["none"] is second["none"]  # one cache
