"""The attackers of "Is this blur safe?": second views, own thresholds, the Protocol, the learned attacker."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from audit.safety import gallery_from_faces
from audit.safety.attackers import (
    Attacker,
    GalleryFaces,
    LearnedAttacker,
    ParrotAttacker,
    RestoreAttacker,
    UnknownKernelAttacker,
    attack_context,
    impostor_threshold,
)
from deblur.data import builtin_faces
from deblur.degrade import recapture
from deblur.embed import get_embedder
from deblur.io import load_image


@pytest.fixture(scope="module")
def small(small_faces):
    """Six built-in faces as candidates and gallery (threshold at FMR 0.2: 15 impostor pairs)."""
    gallery = gallery_from_faces(small_faces, get_embedder("dlib"), n=6, fmr=0.2)
    return gallery, GalleryFaces(tuple(small_faces.ids[:6]), small_faces.images[:6])


@pytest.fixture(scope="module")
def unseen(tmp_path_factory):
    """16 faces of generator seed 1: never seen by the learned attacker (trained on seed 0)."""
    import os

    old = os.environ.get("FACEDRIFT_CACHE")
    os.environ["FACEDRIFT_CACHE"] = str(tmp_path_factory.mktemp("unseen"))
    try:
        return builtin_faces(16, seed=1).floats()
    finally:
        if old is None:
            os.environ.pop("FACEDRIFT_CACHE")
        else:
            os.environ["FACEDRIFT_CACHE"] = old


@pytest.fixture(scope="module")
def face():
    return load_image("examples/generated-1.png")


def _ctx(face, small, **kw):
    gallery, cands = small
    return attack_context(face, gallery=gallery, candidates=cands, fmr=0.2, **kw)


def test_recapture_is_another_photo_of_the_same_person(face):
    a, b = recapture(face, np.random.default_rng(1)), recapture(face, np.random.default_rng(1))
    assert a.shape == face.shape and a.dtype == np.float32 and np.array_equal(a, b)
    assert np.abs(a - face).mean() > 0.01, "a second view must not be the same picture"
    emb = get_embedder("dlib")
    d = np.linalg.norm(emb.embed(a) - emb.embed(face))
    assert 0.02 < d < 0.45, d
    with pytest.raises(TypeError, match="Generator"):
        recapture(face, 0)


def test_context_uses_a_second_view_not_the_photo_itself(face, small):
    ctx = _ctx(face, small)
    assert ctx.second_view == "recapture" and not np.array_equal(ctx.reference, face)
    assert "query" in ctx.gallery.ids and set(ctx.candidates.ids) <= set(ctx.gallery.ids)
    other = recapture(face, np.random.default_rng(5))
    ctx2 = _ctx(face, small, references=[other])
    assert ctx2.second_view == "other_photo" and np.array_equal(ctx2.reference, other)


def test_impostor_threshold_refuses_too_few_pairs():
    assert impostor_threshold(np.arange(100.0), 0.01) == 0.0
    assert impostor_threshold(np.zeros(100), 0.01) == -np.inf, "identical faces (fill) must not all match"
    with pytest.raises(ValueError, match="cannot calibrate"):
        impostor_threshold(np.arange(5.0), 0.01)


def test_every_attacker_is_an_Attacker():
    for a in (RestoreAttacker({}), ParrotAttacker(False), UnknownKernelAttacker(lambda img: None, {}),
              LearnedAttacker(None)):
        assert isinstance(a, Attacker) and a.name and a.description


def test_parrot_calibrates_on_obscured_faces_and_finds_the_person(face, small):
    ctx = _ctx(face, small)
    probes = [ctx.obscure(face, "pixelate", s, seed=0) for s in (4, 12)]
    rows = ParrotAttacker(disk_cache=False).attack("pixelate", [4, 12], probes, ctx)
    assert [r["strength"] for r in rows] == [4.0, 12.0] and all(r["status"] == "ok" for r in rows)
    # obscured faces look alike: the parrot's own threshold shrinks below the clean one as blocks grow
    assert rows[1]["threshold"] < rows[0]["threshold"] < ctx.gallery.threshold.distance + 0.2
    assert rows[0]["rank1"], "at 4-px blocks the obscured gallery still points at the person"


def test_restore_attacker_reports_a_failing_restorer_in_its_row(face, small):
    class Broken:
        name, label, family, uses_strength = "broken", "broken", "test", True

        def restore_batch(self, imgs, strengths):
            raise RuntimeError("boom")

    ctx = _ctx(face, small)
    rows = RestoreAttacker({"gaussian": {"broken": (Broken(), None)}}).attack(
        "gaussian", [2.0], [ctx.obscure(face, "gaussian", 2.0)], ctx)
    assert rows[0]["status"].startswith("error: RuntimeError: boom") and not rows[0]["rank1"]
    assert rows[0]["told_strength"] == 2.0


def test_learned_attacker_is_shipped_and_beats_chance(face, small, unseen):
    from deblur.train.attacker import load_attacker

    model = load_attacker()
    faces = list(unseen)
    emb = get_embedder("dlib")
    clean = np.stack([emb.embed(f) for f in faces])
    ctx = _ctx(face, small)
    pred = model.predict([ctx.obscure(f, "gaussian", 3.0) for f in faces], "gaussian", [3.0] * len(faces))
    assert pred.shape == (16, 128) and np.isfinite(pred).all()
    hits = np.mean(np.linalg.norm(pred[:, None] - clean[None], axis=2).argmin(axis=1) == np.arange(16))
    assert hits > 3 / 16, f"rank-1 {hits:.2f} is near chance (1/16)"
    rows = LearnedAttacker(model).attack("gaussian", [3.0], [ctx.obscure(face, "gaussian", 3.0)], ctx)
    assert rows[0]["family"] == "learned" and np.isfinite(rows[0]["threshold"])
    assert LearnedAttacker(model).attack("fill", [1.0], [face], ctx) == []


def test_tampered_learned_attacker_is_refused(tmp_path):
    from deblur.restore import WEIGHTS_DIR
    from deblur.train.attacker import load_attacker

    shutil.copytree(WEIGHTS_DIR, tmp_path / "w",  # the restorers' weights are not needed here
                    ignore=lambda d, names: [n for n in names if n.endswith(".pt") and Path(d) == WEIGHTS_DIR])
    path = next((tmp_path / "w" / "attackers").glob("*.pt"))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=path.name):
        load_attacker(weights_dir=tmp_path / "w")


def test_id_regressor_forward_backward_and_unknown_kind():
    import torch

    from deblur.models.id_regressor import IdRegressor, condition

    torch.manual_seed(0)
    model = IdRegressor(size=16, hidden=32)
    x = condition(torch.rand(2, 3, 16, 16), ["gaussian", "pixelate_noise"], torch.tensor([3.0, 8.0]),
                  {"gaussian": 12.0, "pixelate_noise": 12.0})
    assert x.shape == (2, model.in_channels, 16, 16) and x[1, 3 + 3].eq(1).all() and x[0, -1].eq(0.25).all()
    y = model(x)
    assert y.shape == (2, 128) and torch.isfinite(y).all()
    y.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    with pytest.raises(ValueError, match="not trained on 'fill'"):
        condition(torch.rand(1, 3, 16, 16), ["fill"], torch.tensor([1.0]), {})


def test_sweep_has_one_row_per_attacker_and_names_the_winner(face, small_faces):
    from audit import safety

    gallery = gallery_from_faces(small_faces, get_embedder("dlib"), n=16)
    cands = GalleryFaces(tuple(small_faces.ids[:16]), small_faces.images[:16])
    res = safety.sweep_face(face, gallery=gallery, candidates=cands, degradations=["pixelate"],
                            strengths={"pixelate": (4, 12)})
    t = res.table
    assert set(t["attacker"]) == {"restore", "parrot", "unknown-kernel", "learned"}
    assert t.groupby("strength")["attacker"].nunique().eq(4).all()
    assert (t.loc[t["attacker"] == "unknown-kernel", "estimated_kind"] == "pixelate").all()
    assert t.loc[t["attacker"] == "parrot", "threshold"].lt(gallery.threshold.distance).all()
    rec = res.recommendations["pixelate"]
    assert t.loc[t["strength"] == 4, "reidentified"].any(), "4-px blocks must be re-identified by someone"
    assert rec.holdout.split(":")[0] in set(t["attacker"]) and (rec.strength or 12) >= 12


def test_parrot_identical_obscured_faces_identify_nobody(face, small):
    """Black fill makes every candidate identical: equal distances (up to rounding) are no rank-1, no match."""
    ctx = _ctx(face, small, fill="black")
    probe = ctx.obscure(face, "fill", 1.0)
    probe[:3] = face[:3]  # the feathered edge of a pasted fill keeps a little of the photo
    row = ParrotAttacker(disk_cache=False).attack("fill", [1.0], [probe], ctx)[0]
    assert row["threshold"] == -np.inf and not row["rank1"], row


def test_cli_gallery_folder_gives_the_parrot_its_photos(small_faces, tmp_path, capsys):
    """`--image photo --gallery FOLDER`: the folder's faces are the clean gallery *and* the parrot's candidates
    (their crops, not blanks), so the parrot runs against people like the query."""
    from PIL import Image

    from audit.safety.__main__ import main as safety_main

    folder = tmp_path / "others"
    folder.mkdir()
    for k in range(16):  # other people's photos: a face on a grey canvas, as a photo would frame it
        canvas = np.full((256, 256, 3), 120, np.uint8)
        canvas[64:192, 64:192] = (small_faces.image(20 + k) * 255).round().astype(np.uint8)
        Image.fromarray(canvas).save(folder / f"person{k}.png")
    out = tmp_path / "sweep"
    code = safety_main(["--image", "examples/generated-1.png", "--gallery", str(folder), "--degradations",
                        "pixelate", "--strengths", "pixelate=8", "--out", str(out)])
    printed = capsys.readouterr()
    assert code == 0, printed.err[-2000:]
    assert "gallery of 16 faces" in printed.out
    rows = pd.read_csv(out / "safety_sweep.csv")
    parrot = rows[rows["attacker"] == "parrot"]
    assert len(parrot) == 1 and parrot["status"].iloc[0] == "ok", parrot["status"].tolist()
    assert np.isfinite(parrot["threshold"].iloc[0])  # calibrated on the folder's obscured faces
