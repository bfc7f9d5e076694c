"""Training: a tiny run writes a checkpoint that reloads with weights_only=True; helpers are exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deblur import degrade
from deblur.restore import LearnedRestorer, load_checkpoint
from deblur.train import TrainConfig, checkerboard_report, make_pairs, train
from deblur.train.__main__ import parse_config


def test_tiny_training_run_writes_a_reloadable_checkpoint(tmp_path, small_faces):
    cfg = TrainConfig(model="resunet", degradation="pixelate", strengths=(2, 6), max_steps=3, batch=2, patch=32,
                      val_faces=2, eval_faces=2, minutes=30, out=str(tmp_path / "tiny.pt"), device="cpu")
    ckpt = train(cfg, faces=small_faces, progress=False)
    assert ckpt["metrics"]["steps"] == 3
    loaded = load_checkpoint(tmp_path / "tiny.pt")  # weights_only=True inside
    assert loaded["model_name"] == "resunet" and loaded["train_config"]["strengths"] == [2.0, 6.0]
    assert {"val_psnr", "test"} <= set(loaded["metrics"]) and loaded["device"].startswith("cpu")
    for k, v in ckpt["state_dict"].items():
        assert torch.equal(v, loaded["state_dict"][k])
    out = LearnedRestorer(tmp_path / "tiny.pt", device="cpu").restore(small_faces.image(0), strength=4)
    assert out.shape == (128, 128, 3)


def test_gan_training_step_runs(tmp_path, small_faces):
    cfg = TrainConfig(model="motion_gan", degradation="motion", strengths=(5, 9), max_steps=2, batch=2, patch=32,
                      val_faces=1, eval_faces=0, adv_weight=0.01, out=str(tmp_path / "gan.pt"), device="cpu")
    ckpt = train(cfg, faces=small_faces, progress=False)
    assert np.isfinite(ckpt["metrics"]["val_psnr"])


def test_make_pairs_is_seeded_and_quantized(small_faces):
    imgs = small_faces.images[:3]
    a = make_pairs(imgs, "motion", (3, 15), np.random.default_rng(5), pairs_per_face=2, with_classical=True)
    b = make_pairs(imgs, "motion", (3, 15), np.random.default_rng(5), pairs_per_face=2, with_classical=True)
    np.testing.assert_array_equal(a["degraded"], b["degraded"])
    assert a["degraded"].dtype == np.uint8 and a["classical"].shape == (6, 128, 128, 3)
    assert set(a["strength"]) <= set(range(3, 16))


def test_checkerboard_report_detects_a_grid():
    rng = np.random.default_rng(0)
    clean = rng.random((3, 64, 64, 3)) * 0.1 + 0.4
    grid = clean.copy()
    grid[:, ::2, ::2] += 0.05
    rep = checkerboard_report(grid, clean, clean)
    assert rep["period2_output_vs_target_db"] > 10 and abs(rep["period2_input_vs_target_db"]) < 1e-9


def test_bad_config_raises():
    with pytest.raises(ValueError, match="unknown degradation"):
        TrainConfig(degradation="sepia")
    with pytest.raises(ValueError, match="empty"):
        TrainConfig(strengths=(5, 1))


def test_cli_defaults_to_the_offered_range():
    cfg = parse_config(["--model", "resunet", "--degradation", "motion", "--minutes", "1"])
    spec = degrade.STRENGTHS["motion"]
    assert cfg.strengths == (spec.low, spec.high) and cfg.out == "weights/resunet-motion.pt"
