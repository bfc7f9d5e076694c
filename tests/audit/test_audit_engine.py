"""Known-answer tests of the audit engine, groups and CLI on a handful of built-in faces (dlib embedder)."""

from __future__ import annotations

import csv

import numpy as np
import pandas as pd
import pytest

from audit.config import AuditConfig
from audit.engine import CleanFace, Gallery, audit_image, prepare_face, resolve_restorers, run_audit
from audit.groups import age_bin, ita_bin, skin_tone
from deblur.embed import DlibEmbedder, EmbedderUnavailable, centred_cosine, get_embedder, l2_distance
from deblur.restore.classical import NoRestorer


@pytest.fixture(scope="module")
def embedder() -> DlibEmbedder:
    return DlibEmbedder()


@pytest.fixture(scope="module")
def cleans(small_faces, embedder) -> list[CleanFace]:
    return [prepare_face(small_faces.image(i), small_faces.ids[i], embedder) for i in range(4)]


@pytest.fixture(scope="module")
def gallery(cleans) -> Gallery:
    return Gallery.build([c.image_id for c in cleans], [c.embedding for c in cleans], fmr=0.2)


class Identity:
    """An oracle 'restorer' that returns the clean image: restored == clean."""

    name, label, family, degradations, uses_strength = "oracle", "oracle", "test", ("gaussian",), False

    def __init__(self, clean: np.ndarray):
        self.clean = clean

    def restore(self, img, strength=None):
        return self.clean.copy()


class Broken:
    name, label, family, degradations, uses_strength = "broken", "broken", "test", ("gaussian",), False

    def restore(self, img, strength=None):
        raise RuntimeError("boom")


def test_identical_images_give_similarity_one_and_zero_drift(cleans, gallery, embedder):
    c = cleans[0]
    again = embedder.embed(c.image)
    assert l2_distance(again, c.embedding) == pytest.approx(0.0, abs=1e-6)
    assert centred_cosine(again, c.embedding, gallery.centre) == pytest.approx(1.0)
    rows = audit_image(c, restorers={"gaussian": {"oracle": Identity(c.image), "none": NoRestorer()}},
                       degradations={"gaussian": [3.0]}, embedder=embedder, gallery=gallery)
    by_model = {r["model"]: r for r in rows}
    oracle, none = by_model["oracle"], by_model["none"]
    assert oracle["status"] == "ok" and oracle["dist_restored_clean"] == pytest.approx(0.0, abs=1e-6)
    assert oracle["sim_restored_clean"] == pytest.approx(1.0)
    assert oracle["rank1_restored"] and oracle["match_restored"]
    assert oracle["delta_ita"] == pytest.approx(0.0, abs=1e-9)
    assert oracle["drift"] < 0  # restoring the exact original moves identity back towards clean
    assert none["drift"] == pytest.approx(0.0, abs=1e-9)  # restored == degraded: zero drift
    assert none["dist_restored_degraded"] == pytest.approx(0.0, abs=1e-9)
    assert none["embedder"] == embedder.name == "dlib-resnet-v1-crop5"
    assert none["threshold"] == gallery.threshold.distance


def test_strong_degradation_lowers_similarity(cleans, gallery, embedder):
    for c in cleans[:3]:
        rows = audit_image(c, restorers={"gaussian": {"none": NoRestorer()}}, degradations={"gaussian": [1.0, 6.0]},
                           embedder=embedder, gallery=gallery)
        mild, strong = sorted(rows, key=lambda r: r["strength"])
        assert strong["sim_restored_clean"] < mild["sim_restored_clean"]
        assert strong["dist_degraded_clean"] > mild["dist_degraded_clean"]
        assert strong["psnr_degraded"] < mild["psnr_degraded"]


def test_faceless_image_is_counted_not_dropped(gallery, embedder):
    grey = np.full((128, 128, 3), 0.5, np.float32)
    clean = prepare_face(grey, "grey", embedder)
    assert clean.embedding is None and clean.groups["pred_skin_tone_bin"] == "no_face"
    rows = audit_image(clean, restorers={"gaussian": {"none": NoRestorer(), "x": Broken()}},
                       degradations={"gaussian": [2.0, 4.0]}, embedder=embedder, gallery=gallery)
    assert len(rows) == 4 and {r["status"] for r in rows} == {"no_face_clean"}


def test_failing_restorer_gives_error_rows_and_others_continue(cleans, gallery, embedder):
    rows = audit_image(cleans[1], restorers={"gaussian": {"broken": Broken(), "none": NoRestorer()}},
                       degradations={"gaussian": [2.0]}, embedder=embedder, gallery=gallery)
    status = {r["model"]: r["status"] for r in rows}
    assert status["broken"].startswith("error:RuntimeError: boom") and status["none"] == "ok"


def test_groups_ita_and_bins():
    assert ita_bin(60) == "1-very-light" and ita_bin(-45) == "6-dark" and ita_bin(float("nan")) == "unusable"
    assert age_bin(12) == "<30" and age_bin(30) == "30-44" and age_bin(80) == "45+"
    lab_skin = np.zeros((64, 64, 3), np.float32) + np.array([0.85, 0.65, 0.5], np.float32)  # light, warm skin
    tone = skin_tone(lab_skin)
    assert tone.bin != "unusable"
    assert tone.ita == pytest.approx(np.degrees(np.arctan((tone.lightness - 50) / tone.b)))
    blue = np.zeros((64, 64, 3), np.float32) + np.array([0.3, 0.4, 0.8], np.float32)  # b* < 0
    assert skin_tone(blue).bin == "unusable"


def test_unknown_model_and_embedder_give_clear_errors():
    with pytest.raises(ValueError, match="known:.*none"):
        resolve_restorers(["no-such-model"], ["gaussian"])
    with pytest.raises(ValueError, match="choose one of"):
        get_embedder("nope")


def test_facenet_without_weights_raises_not_random(monkeypatch, tmp_path):
    import torch

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    import facenet_pytorch.models.inception_resnet_v1 as irv1

    def no_network(url, dst, *a, **k):
        raise OSError("no network")

    monkeypatch.setattr(irv1, "download_url_to_file", no_network)
    with pytest.raises(EmbedderUnavailable, match="dlib"):
        get_embedder("facenet")


def _tiny_folder(tmp_path, small_faces):
    from deblur.io import save_png

    root = tmp_path / "data"
    root.mkdir()
    for i in range(5):
        save_png(small_faces.image(i), root / f"face{i}.png")
    save_png(np.full((128, 128, 3), 0.5, np.float32), root / "grey.png")
    (root / "broken.png").write_bytes(b"this is not a png")
    (root / "notes.txt").write_text("not an image")
    save_png(small_faces.image(6), tmp_path / "outside.png")
    labels = root / "labels.csv"
    with labels.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "group"])
        for i in range(5):
            w.writerow([f"face{i}.png", "a" if i < 3 else "b"])
        w.writerows([["grey.png", "b"], ["broken.png", "a"], ["../outside.png", "a"], ["missing.png", "b"]])
    return root, labels


def test_cli_end_to_end_with_bad_rows(tmp_path, small_faces):
    from audit.__main__ import main

    root, labels = _tiny_folder(tmp_path, small_faces)
    out = tmp_path / "out"
    code = main(["--data", str(root), "--labels", str(labels), "--models", "none", "wiener", "--degradations",
                 "gaussian", "--strengths", "2", "5", "--boot", "50", "--min-group-n", "3", "--out", str(out),
                 "--no-contact-sheets", "--predict", "pred_skin_tone_bin"])
    assert code == 0
    per_image = pd.read_csv(out / "per_image.csv")
    assert set(per_image["model"]) == {"none", "wiener"}
    assert (per_image["image_id"] == "grey.png").sum() == 4
    assert set(per_image.loc[per_image.image_id == "grey.png", "status"]) == {"no_face_clean"}
    skipped = pd.read_csv(out / "skipped.csv")
    reasons = " ".join(skipped["reason"].astype(str))
    assert "outside" in reasons and "missing" in reasons and "broken.png" in reasons
    assert "outside.png" not in set(per_image["image_id"])
    groups = pd.read_csv(out / "groups.csv")
    b = groups[(groups.attribute == "group") & (groups.group == "b") & (groups.model == "none")]
    assert (b["n_no_face_clean"] == 1).all() and (b["label_source"] == "label").all()
    assert set(groups.loc[groups.attribute == "pred_skin_tone_bin", "label_source"]) == {"prediction"}
    assert {"embedder", "threshold", "fmr", "n_boot", "seed", "fail_lo", "fail_hi", "significant"} <= set(groups)
    assert (out / "figures.html").stat().st_size > 10_000
    assert main(["--rebuild-report", str(out)]) == 0  # same rows, same seed: the same group table
    pd.testing.assert_frame_equal(pd.read_csv(out / "groups.csv"), groups)


def test_cli_unknown_model_is_a_clear_error(tmp_path, capsys):
    from audit.__main__ import main

    code = main(["--models", "nonexistent", "--degradations", "gaussian", "--out", str(tmp_path), "--n", "2"])
    assert code == 2
    assert "known:" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--strengths", "fast"])


def test_rows_are_on_disk_when_the_run_dies_midway(tmp_path, small_faces, monkeypatch):
    root, labels = _tiny_folder(tmp_path, small_faces)
    config = AuditConfig(data=str(root), labels=str(labels), models=["none"], degradations={"gaussian": [3.0]},
                         out=str(tmp_path / "out"), n_boot=20, predict=[])

    def progress(stage, done, total):
        if stage == "audit" and done == 2:
            raise KeyboardInterrupt  # e.g. Ctrl-C or a killed worker after two images

    with pytest.raises(KeyboardInterrupt):
        run_audit(config, progress)
    rows = pd.read_csv(tmp_path / "out" / "per_image.csv")
    assert len(rows) == 2 and rows["image_id"].nunique() == 2
