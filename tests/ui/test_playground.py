"""Playground handlers called directly (no server): real example photos, real restorers, bad uploads."""

from __future__ import annotations

import math
import re
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from deblur import degrade as D
from deblur import playground as compute
from deblur.degrade import to_uint8
from deblur.faces import CROP_SIZE
from deblur.metrics import psnr
from ui import playground as P
from ui.common import EXAMPLES_DIR
from ui.uploads import read_photo

FACE = EXAMPLES_DIR / "generated-0.png"
ASTRONAUT = EXAMPLES_DIR / "astronaut.png"


def make_bad_uploads(folder: Path) -> dict[str, Path]:
    """Awkward uploads: must fail with a clear error, or work, never crash the app.

    Returns:
        name -> file. ``text``, ``huge`` and ``noface`` must fail; ``gray``, ``rgba`` and ``exif`` must work.
    """
    folder.mkdir(parents=True, exist_ok=True)
    files = {name: folder / f"{name}.png" for name in ("text", "huge", "gray", "rgba", "noface")}
    files["text"].write_text("this is a text file, not an image\n")
    Image.new("1", (10_000, 10_000)).save(files["huge"])  # 100 MP, a few kB on disk: a decompression bomb
    astronaut = Image.open(ASTRONAUT).convert("RGB")
    astronaut.convert("L").save(files["gray"])
    rgba = astronaut.convert("RGBA")
    rgba.putalpha(Image.new("L", rgba.size, 200))
    rgba.save(files["rgba"])
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((200, 300, 3)) * 40 + 100).astype(np.uint8)).save(files["noface"])
    # Stored turned 90° clockwise, with EXIF orientation 8 (viewers turn it back): upright only if EXIF is applied.
    files["exif"] = folder / "exif.jpg"
    exif = Image.Exif()
    exif[0x0112] = 8
    astronaut.transpose(Image.Transpose.ROTATE_270).save(files["exif"], quality=95, exif=exif)
    return files


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> dict[str, Path]:
    return make_bad_uploads(tmp_path_factory.mktemp("uploads"))


@pytest.mark.parametrize("kind", sorted(D.STRENGTHS))
def test_strength_slider_follows_the_degradation(kind):
    spec = D.STRENGTHS[kind]
    update = P.strength_slider(kind)
    assert (update["minimum"], update["maximum"], update["step"], update["value"]) == (
        spec.low, spec.high, spec.step, spec.default)
    assert spec.name in update["label"]
    assert "guess" in P.strength_slider(kind, "degraded")["label"]
    with pytest.raises(gr.Error, match="Unknown degradation"):
        P.strength_slider("sharpen")


def test_slot_count_covers_every_degradation():
    slots = P.slot_count()
    for kind in D.STRENGTHS:
        shown = [name for name in compute.restorers(kind) if name != "none"]
        assert len(shown) <= slots or slots == P.MAX_SLOTS


@pytest.mark.parametrize(("kind", "strength"), [("gaussian", 3.0), ("pixelate", 8), ("motion", 15)])
def test_face_crop_run_measures_every_restorer(kind, strength):
    result = P.run_playground(str(FACE), "face", "clean", kind, strength)
    assert result.original.shape == result.degraded.shape == (CROP_SIZE, CROP_SIZE, 3)
    expected = compute.restorers(kind)
    assert [r.name for r in result.reconstructions] == list(expected)
    table = result.table.set_index("restorer")
    assert len(table) == len(expected)
    # the degraded input is the quantized degradation of the crop, and the "none" row measures exactly it
    assert np.array_equal(result.degraded, D.quantize(D.degrade(result.original, kind, strength)))
    none = table.loc[expected["none"].label]
    assert math.isfinite(none["PSNR (dB)"]) and none["PSNR (dB)"] == pytest.approx(
        psnr(result.original, result.degraded), abs=0.01)
    assert none["identity dist. to degraded"] == 0
    for rec in result.reconstructions:
        assert rec.image.dtype == np.float32 and np.array_equal(rec.image, D.quantize(rec.image))  # 8-bit
        row = table.loc[rec.label]
        assert row["PSNR (dB)"] == pytest.approx(psnr(result.original, rec.image), abs=0.01)
        assert 0 < row["SSIM"] <= 1
        assert row["reading"]
    # the non-blind classical baselines beat doing nothing on this data (ASSETS.md)
    classical = [r for r in result.reconstructions if r.family == "classical"]
    assert classical
    assert max(table.loc[r.label, "PSNR (dB)"] for r in classical) > none["PSNR (dB)"] + 1


def test_already_degraded_upload_has_no_reference_metrics(tmp_path):
    photo = tmp_path / "blurred.png"
    clean = read_photo(FACE)
    Image.fromarray(to_uint8(D.degrade(clean, "gaussian", 2.0))).save(photo)
    result = P.run_playground(str(photo), "face", "degraded", "gaussian", 2.0)
    assert result.original is None
    assert result.table["PSNR (dB)"].isna().all() and result.table["SSIM"].isna().all()
    assert result.table["identity dist. to original"].isna().all()
    assert result.table["identity dist. to degraded"].notna().any()
    assert "No original" in result.reading
    ui = P.outputs_for_ui(result, P.slot_count())
    assert ui[0] is None and ui[1].dtype == np.uint8


def test_whole_image_mode_shrinks_and_still_measures_identity(tmp_path):
    big = tmp_path / "big.png"
    Image.open(ASTRONAUT).resize((1024, 768)).save(big)
    result = P.run_playground(str(big), "whole", "clean", "pixelate", 6)
    assert result.original.shape == (384, 512, 3)
    assert "shrunk to 512×384" in result.note
    assert result.table["identity dist. to original"].notna().all()


def test_outputs_for_ui_fill_fixed_slots():
    result = P.run_playground(str(FACE), "face", "clean", "motion", 9)
    slots = P.slot_count()
    ui = P.outputs_for_ui(result, slots)
    assert len(ui) == 2 + slots + 2
    shown = [r for r in result.reconstructions if r.name != "none"]
    sliders = ui[2:2 + slots]
    for rec, update in zip(shown, sliders, strict=False):
        assert update["visible"] and P.CAPTION in update["label"]
        left, right = update["value"]
        assert np.array_equal(left, to_uint8(result.degraded)) and np.array_equal(right, to_uint8(rec.image))
    assert all(not u["visible"] for u in sliders[len(shown):])


@pytest.mark.parametrize(("name", "message"), [
    ("text", "not an image"), ("huge", "megapixels"), ("noface", "Whole image"),
])
def test_bad_uploads_raise_clear_errors(bad, name, message):
    with pytest.raises(gr.Error, match=message):
        P.run_playground(str(bad[name]), "face", "clean", "gaussian", 3.0)


def test_missing_upload_and_bad_parameters_raise():
    with pytest.raises(gr.Error, match="Upload a photo"):
        P.run_playground(None, "face", "clean", "gaussian", 3.0)
    with pytest.raises(gr.Error, match="whole number"):
        P.run_playground(str(FACE), "face", "clean", "pixelate", 2.5)
    with pytest.raises(gr.Error, match="Unknown mode"):
        P.run_playground(str(FACE), "zoom", "clean", "gaussian", 3.0)
    with pytest.raises(gr.Error, match="Unknown degradation"):
        P.run_playground(str(FACE), "face", "clean", "sharpen", 3.0)


@pytest.mark.parametrize("name", ["gray", "rgba", "exif"])
def test_awkward_but_valid_uploads_work(bad, name):
    upright = compute.prepare(read_photo(ASTRONAUT), "face").image
    result = P.run_playground(str(bad[name]), "face", "clean", "gaussian", 2.0)
    # EXIF rotation applied: the crop is the same face as from the upright file (a 90° turn would not be)
    if name == "exif":
        assert psnr(result.original, upright) > 20  # JPEG + landmark jitter; a wrong turn finds no face at all
    if name == "gray":
        assert np.allclose(result.original[..., 0], result.original[..., 1], atol=1 / 255)


def test_no_face_works_in_whole_image_mode(bad):
    result = P.run_playground(str(bad["noface"]), "whole", "clean", "gaussian", 2.0)
    assert "No face found" in result.note
    assert result.table["identity dist. to original"].isna().all()
    assert result.table["PSNR (dB)"].notna().all()


@pytest.mark.parametrize("model_name", ["resunet"])
def test_learned_restorers_from_a_manifest_show_up_as_panels_and_rows(tmp_path, monkeypatch, model_name):
    """An (untrained) learned model in a manifest flows through the same request as the shipped ones will."""
    import json

    import torch

    from deblur.models import build_model
    from deblur.restore import restorers_for, sha256_file

    model = build_model(model_name)
    torch.save({"state_dict": model.state_dict(), "model_name": model_name, "model_args": {},
                "degradation": "gaussian", "label": f"{model_name} (untrained, test)"}, tmp_path / "m.pt")
    (tmp_path / "manifest.json").write_text(json.dumps(
        {"models": {f"{model_name}-gaussian": {"file": "m.pt", "degradation": "gaussian",
                                               "sha256": sha256_file(tmp_path / "m.pt"),
                                               "label": f"{model_name} (untrained, test)"}}}))
    monkeypatch.setattr(compute, "restorers", lambda kind: restorers_for(kind, weights_dir=tmp_path, device="cpu"))
    # one more panel than the classical restorers alone (no manifest)
    assert P.slot_count(tmp_path) == P.slot_count(tmp_path / "no-manifest") + 1
    for mode in ("face", "whole"):  # whole: 512×512, not a multiple of every model's stride
        result = P.run_playground(str(ASTRONAUT), mode, "clean", "gaussian", 3.0)
        learned = [r for r in result.reconstructions if r.family == "learned"]
        assert len(learned) == 1 and learned[0].image.shape == result.original.shape
        row = result.table.set_index("restorer").loc[learned[0].label]
        assert row["family"] == "learned" and math.isfinite(row["PSNR (dB)"])
        ui = P.outputs_for_ui(result, P.slot_count(tmp_path))
        assert any(u.get("visible") and learned[0].label in u["label"] for u in ui[2:-2])


def test_tampered_weights_reach_the_user_as_a_clear_error(tmp_path, monkeypatch):
    """A flipped byte in a shipped model: the playground refuses it and names the file (no generic 'Error')."""
    import shutil

    from deblur.restore import WEIGHTS_DIR, offered_models, restorers_for

    entry = next(iter(offered_models(WEIGHTS_DIR, "gaussian").values()), None)
    if entry is None:
        pytest.skip("no shipped gaussian model in weights/")
    copy = tmp_path / "weights"
    shutil.copytree(WEIGHTS_DIR, copy)
    data = bytearray((copy / entry["file"]).read_bytes())
    data[len(data) // 2] ^= 0x01
    (copy / entry["file"]).write_bytes(bytes(data))
    monkeypatch.setattr(compute, "restorers", lambda kind: restorers_for(kind, weights_dir=copy, device="cpu"))
    with pytest.raises(gr.Error, match=entry["file"] + ".*sha256"):
        P.run_playground(str(FACE), "face", "clean", "gaussian", 3.0)


def test_already_blurred_photo_is_estimated_not_guessed(tmp_path):
    """Issue 14: a real photo blurred in its own pixels gets the estimated kind and strength, stated in pixels of
    the photo and of the crop; the (ignored) wrong guess would have collapsed Wiener into stripes."""
    photo = tmp_path / "blurred.png"
    Image.fromarray(to_uint8(D.quantize(D.motion(read_photo(EXAMPLES_DIR / "astronaut.png"), 15)))).save(photo)
    result = P.run_playground(str(photo), "face", "degraded", "gaussian", 8.0)  # estimate is on by default
    assert "Estimated from your photo" in result.reading and "horizontal motion blur" in result.reading
    assert "of your photo" in result.reading and "of the 128-px face crop" in result.reading
    said = re.search(r"length ([0-9.]+) ± [0-9.]+ px\*\* of your photo", result.reading)
    assert said and abs(float(said.group(1)) - 15) <= 1.5
    # the crop is rotated and resampled from the photo, so deconvolution may look over-sharpened, never striped
    assert (result.table["artefacts"] != "collapsed").all()
