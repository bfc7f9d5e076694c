"""LearnedRestorer: loading, pad/crop of any size, batching, non-blind inputs, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deblur.models import build_model
from deblur.restore import LearnedRestorer, load_checkpoint, load_restorer, restorers_for


def _save(path, name="resunet", args=None, kind="gaussian"):
    torch.manual_seed(0)
    model = build_model(name, **(args or {}))
    torch.save({"state_dict": model.state_dict(), "model_name": name, "model_args": args or {},
                "name": f"{name}-test", "degradation": kind}, path)
    return path


@pytest.mark.parametrize(("name", "kind"), [("seed_ae", "gaussian"), ("resunet", "motion"), ("resunet", "pixelate")])
@pytest.mark.parametrize("shape", [(37, 53), (128, 128), (5, 7)])
def test_any_size_round_trips(tmp_path, name, kind, shape):
    r = LearnedRestorer(_save(tmp_path / "m.pt", name, kind=kind), device="cpu")
    img = np.random.default_rng(0).random((*shape, 3), dtype=np.float32)
    out = r.restore(img, strength=3)
    assert out.shape == img.shape and out.dtype == np.float32
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


def test_batch_matches_single(tmp_path):
    r = LearnedRestorer(_save(tmp_path / "m.pt"), device="cpu", batch_size=2)
    imgs = np.random.default_rng(1).random((3, 40, 24, 3), dtype=np.float32)
    batch = r.restore_batch(imgs, [1.0, 2.0, 3.0])
    singles = np.stack([r.restore(im, s) for im, s in zip(imgs, [1.0, 2.0, 3.0], strict=True)])
    np.testing.assert_allclose(batch, singles, atol=1e-5)


def test_untrained_resunet_equals_classical_estimate(tmp_path):
    from deblur.restore.classical import classical_estimate

    r = LearnedRestorer(_save(tmp_path / "m.pt", kind="motion"), device="cpu")
    img = np.random.default_rng(2).random((32, 48, 3), dtype=np.float32)
    np.testing.assert_allclose(r.restore(img, 9), classical_estimate(img, "motion", 9), atol=1e-5)


def test_non_blind_model_needs_strength(tmp_path):
    r = LearnedRestorer(_save(tmp_path / "m.pt"), device="cpu")
    assert r.uses_strength and r.family == "learned" and r.degradations == ("gaussian",)
    with pytest.raises(ValueError, match="strength"):
        r.restore(np.zeros((16, 16, 3), np.float32))


def test_missing_weights_name_file_and_retrain(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothere\.pt.*retrain"):
        LearnedRestorer(tmp_path / "nothere.pt")


def test_corrupt_weights_raise(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"bad\.pt.*corrupt"):
        load_checkpoint(bad)
    torch.save({"hello": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="lacks"):
        load_checkpoint(bad)


def test_mismatched_state_dict_raises(tmp_path):
    path = tmp_path / "m.pt"
    torch.save({"state_dict": build_model("seed_ae").state_dict(), "model_name": "resunet", "model_args": {}}, path)
    with pytest.raises(ValueError, match="does not match"):
        LearnedRestorer(path)


def test_restorers_for_has_classical_and_none(tmp_path):
    rs = restorers_for("gaussian", weights_dir=tmp_path)
    assert "none" in rs and any(r.family == "classical" for r in rs.values())
    with pytest.raises(ValueError, match="unknown degradation"):
        restorers_for("sepia")


def test_load_restorer_unknown_name(tmp_path):
    with pytest.raises(ValueError, match="unknown restorer"):
        load_restorer("definitely-not-a-model", weights_dir=tmp_path)


def test_every_restorer_is_a_Restorer_and_built_once(tmp_path):
    from deblur.restore import Restorer, restorer_names

    for kind in ("gaussian", "pixelate", "motion"):
        rs = restorers_for(kind, weights_dir=tmp_path)
        assert all(isinstance(r, Restorer) for r in rs.values())
        assert list(rs) == restorer_names(kind, weights_dir=tmp_path)
        again = restorers_for(kind, weights_dir=tmp_path)
        assert all(again[n] is rs[n] for n in rs)  # one process-wide cache
    assert load_restorer("wiener") is restorers_for("gaussian", weights_dir=tmp_path)["wiener"]

    class HalfRestorer:
        name = label = family = "x"
        degradations = ("gaussian",)
        uses_strength = False

        def restore(self, img, strength=None):
            return img

    assert not isinstance(HalfRestorer(), Restorer)  # no restore_batch
