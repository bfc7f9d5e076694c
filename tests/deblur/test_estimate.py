"""Blind estimation (deblur.estimate): block grid, kind and strength, model integrity, CLI. A few seconds."""

import json
import shutil

import numpy as np
import pytest

from deblur import degrade, texture
from deblur.estimate import Estimate, EstimatorError, block_grid, estimate, load_estimator, main, restorer_strength
from deblur.io import load_image, save_png


@pytest.fixture(scope="module")
def face():
    return load_image("examples/generated-1.png")


@pytest.fixture(scope="module")
def real():
    # a 160-px region of the real astronaut photo around her face (a real photograph, not a generated face)
    return load_image("examples/astronaut.png")[20:180, 150:310]


@pytest.mark.parametrize("block,shift", [(8, (0, 0)), (5, (3, 2)), (12, (7, 0))])
def test_block_grid_finds_size_and_offset(real, block, shift):
    img = degrade.pixelate(real, block)[shift[1]:, shift[0]:]
    grid = block_grid(texture.jpeg(img, 80))
    assert grid["block"] == pytest.approx(block, abs=0.05)
    expected = ((-shift[0]) % block, (-shift[1]) % block)
    for got, want in zip(grid["offset"], expected, strict=True):
        assert min(abs(got - want), block - abs(got - want)) < 0.3
    assert grid["score"] > 0.3


def test_block_grid_survives_resizing(real):
    grid = block_grid(texture.jpeg(texture.resize(degrade.pixelate(real, 8), 0.75), 90))
    assert grid["block"] == pytest.approx(6.0, abs=0.15)


def test_no_grid_in_a_blurred_photo(real):
    assert block_grid(degrade.gaussian(real, 2.0))["score"] < 0.15


@pytest.mark.parametrize("kind,strength,tol", [("gaussian", 4.0, 1.0), ("motion", 15, 2.5), ("pixelate", 8, 0.1)])
@pytest.mark.parametrize("which", ["face", "real"])
def test_estimate_kind_and_strength(request, which, kind, strength, tol):
    img = request.getfixturevalue(which)
    est = estimate(texture.jpeg(degrade.degrade(img, kind, strength), 85))
    assert est.kind == kind
    assert est.strength == pytest.approx(strength, abs=tol)
    assert est.uncertainty > 0
    assert (est.offset is not None) == (kind == "pixelate")


def test_sharp_photo_reads_as_barely_blurred(real):
    est = estimate(real)
    assert est.kind == "gaussian" and est.strength < 1.0


def test_scaled_and_restorer_strength():
    est = Estimate("motion", 20.0, 2.0, None, {"gaussian": 0, "pixelate": 0, "motion": 1}, 0.0, (400, 400))
    crop = est.scaled(128 / 400)
    assert crop.strength == pytest.approx(6.4) and crop.uncertainty == pytest.approx(0.64)
    assert crop.for_restorer() == 6.0
    assert restorer_strength("gaussian", 9.3) == 8.0 and restorer_strength("pixelate", 0.2) == 1.0


def test_altered_model_is_refused(tmp_path, face):
    from deblur.estimate import MODEL_PATH

    copy = tmp_path / "estimator.npz"
    shutil.copy(MODEL_PATH, copy)
    shutil.copy(MODEL_PATH.with_suffix(".json"), tmp_path / "estimator.json")
    estimate(face, copy)  # intact copy works
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 1
    copy.write_bytes(bytes(data))
    load_estimator.cache_clear()
    with pytest.raises(EstimatorError, match="does not match the sha256"):
        estimate(face, copy)
    (tmp_path / "estimator.json").unlink()
    load_estimator.cache_clear()
    with pytest.raises(EstimatorError, match="missing"):
        estimate(face, copy)


def test_cli_prints_json(tmp_path, capsys, real):
    path = tmp_path / "blurred.png"
    save_png(degrade.motion(real, 11), path)
    assert main([str(path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["kind"] == "motion" and out["units"] == "pixels of the given image"
    assert set(out) >= {"strength", "uncertainty", "offset", "probabilities"}


def test_cli_tiny_image_says_what_to_do(tmp_path, capsys):
    path = tmp_path / "tiny.png"
    save_png(np.zeros((20, 20, 3), np.float32), path)
    assert main([str(path)]) == 2
    assert "at least 32 px" in capsys.readouterr().err


def test_estimated_strength_restorer_is_blind_and_close_to_told(face):
    from deblur.blind import EstimatedStrength, with_estimated
    from deblur.metrics import psnr
    from deblur.restore.classical import WienerRestorer

    wiener = WienerRestorer("motion")
    degraded = degrade.quantize(degrade.motion(face, 15))
    blind = with_estimated({"wiener": wiener}, "motion")["wiener (estimated strength)"]
    assert isinstance(blind, EstimatedStrength) and blind.uses_strength is False
    out = blind.restore_batch(degraded[None])[0]
    told = wiener.restore(degraded, 15)
    assert psnr(face, out) > psnr(face, degraded) + 3  # restores without being told
    assert abs(psnr(face, out) - psnr(face, told)) < 2.0
    assert blind.kind_misses == 0 and blind.estimates[-1].kind == "motion"
    with pytest.raises(ValueError, match="already blind"):
        EstimatedStrength(blind, "motion")


def test_evaluate_on_a_folder_of_photos(tmp_path, face, real):
    from deblur.train import evaluate

    photos = tmp_path / "photos"
    photos.mkdir()
    save_png(face, photos / "a.png")
    save_png(real[:128, :128], photos / "b.png")
    (photos / "notes.txt").write_text("not a photo")
    out = tmp_path / "ev"
    assert evaluate.main(["--out", str(out), "--data", str(photos), "--no-identity", "--strengths", "gaussian=3",
                          "--weights-dir", str(tmp_path / "none")]) == 0
    md = (out / "eval.md").read_text()
    assert "2 images of `--data" in md and "`wiener (estimated strength)` | estimated |" in md
    with pytest.raises(SystemExit):
        evaluate.main(["--out", str(out), "--data", str(tmp_path / "missing")])


def test_texture_patches_and_artifacts_are_seeded():
    a = texture.texture_patches(3, 32, np.random.default_rng(1))
    b = texture.texture_patches(3, 32, np.random.default_rng(1))
    assert a.shape == (3, 32, 32, 3) and a.dtype == np.uint8 and np.array_equal(a, b)
    img = a[0].astype(np.float32) / 255
    out = texture.photo_artifacts(1.0, 1.0)(img, np.random.default_rng(0))
    assert out.shape == img.shape and not np.array_equal(out, img)
    with pytest.raises(ValueError):
        texture.photo_artifacts(1.5, 0)


def test_collapse_flags_a_too_strong_deconvolution(real):
    from deblur.metrics import collapse
    from deblur.restore.classical import WienerRestorer

    crop = real[16:144, 16:144]
    degraded = degrade.quantize(degrade.gaussian(crop, 1.7))
    wiener = WienerRestorer("gaussian")
    assert collapse(degraded, wiener.restore(degraded, 1.7)).verdict == "ok"
    bad = collapse(degraded, wiener.restore(degraded, 6.0))
    assert bad.verdict == "collapsed" and (bad.gradient_ratio > 2.5 or bad.clipped_gain > 0.08)
    assert collapse(degraded, degraded).verdict == "ok"


def test_estimate_photo_states_photo_and_crop_pixels():
    from deblur.blind import estimate_photo

    photo = load_image("examples/astronaut.png")  # 512 px real photo
    blurred = degrade.quantize(degrade.motion(photo, 21))
    # a crop map like deblur.faces makes: the 256-px face square at (130, 0) scaled to 128 px (x0.5)
    matrix = np.array([[0.5, 0.0, -65.0], [0.0, 0.5, 0.0]])
    reading = estimate_photo(blurred, matrix)
    assert reading.region == (130, 0, 386, 256)
    assert reading.photo.kind == "motion" and reading.photo.strength == pytest.approx(21, abs=2.5)
    assert reading.scale == pytest.approx(0.5)
    assert reading.processed.strength == pytest.approx(reading.photo.strength * 0.5, abs=0.01)
    text = reading.text("the 128-px face crop")
    assert "of your photo" in text and "of the 128-px face crop" in text
