"""Classical non-blind baselines: they beat the degraded input, handle borders, odd sizes and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from deblur import degrade
from deblur.metrics import psnr
from deblur.restore import classical


def _mean_psnr(clean, outs) -> float:
    return float(np.mean([psnr(c, o) for c, o in zip(clean, outs, strict=True)]))


@pytest.fixture(scope="module")
def faces(small_faces) -> np.ndarray:
    return small_faces.floats()[:4]


@pytest.mark.parametrize(("kind", "strength"), [("gaussian", 3), ("motion", 15)])
@pytest.mark.parametrize("cls", [classical.WienerRestorer, classical.RichardsonLucyRestorer])
def test_deconvolution_beats_degraded_input(faces, cls, kind, strength):
    degraded = np.stack([degrade.quantize(degrade.degrade(x, kind, strength)) for x in faces])
    restored = cls(kind).restore_batch(degraded, [strength] * len(faces))
    assert restored.shape == degraded.shape and restored.dtype == np.float32
    assert _mean_psnr(faces, restored) > _mean_psnr(faces, degraded) + 2.0


def test_bicubic_beats_blocky_image_and_is_not_blocky(faces):
    degraded = np.stack([degrade.quantize(degrade.pixelate(x, 8)) for x in faces])
    restored = classical.BicubicRestorer().restore_batch(degraded, [8] * len(faces))
    assert _mean_psnr(faces, restored) > _mean_psnr(faces, degraded) + 1.0
    # inside a block the blocky image is constant; the interpolation must not be
    assert np.ptp(restored[:, 8:16, 8:16], axis=(1, 2)).max() > 0.01


def test_classical_estimate_matches_restorers(faces):
    y = degrade.quantize(degrade.gaussian(faces[0], 4))
    np.testing.assert_array_equal(classical.classical_estimate(y, "gaussian", 4),
                                  classical.WienerRestorer("gaussian").restore(y, 4))
    p = degrade.quantize(degrade.pixelate(faces[0], 8))
    np.testing.assert_array_equal(classical.classical_estimate(p, "pixelate", 8),
                                  classical.BicubicRestorer().restore(p, 8))


def test_wiener_equals_skimage_with_identity_regulariser(rng):
    from skimage.restoration import wiener as sk_wiener

    img = rng.random((32, 48, 3)).astype(np.float32)
    kernel = degrade.gaussian_psf(2.0)
    ext = classical._mirror_periodic(img, (2 * kernel.shape[0], 2 * kernel.shape[1]))
    delta = np.zeros_like(kernel)
    delta[kernel.shape[0] // 2, kernel.shape[1] // 2] = 1.0
    ours = classical.wiener(img, kernel, 1e-2)
    theirs = np.stack([sk_wiener(ext[:, :, c], kernel, 1e-2, reg=delta, clip=False) for c in range(3)], axis=2)
    np.testing.assert_allclose(ours, np.clip(theirs[:32, :48], 0, 1), atol=1e-4)


def test_exact_blur_model_recovers_unquantised_image(small_faces):
    x = small_faces.image(0)
    # no rounding: with the exact mirror boundary model, Wiener with a tiny balance is near-perfect
    out = classical.wiener(degrade.motion(x, 9), degrade.psf("motion", 9), 1e-8)
    assert psnr(x, out) > 45


@pytest.mark.parametrize("restorer", [classical.WienerRestorer("gaussian"), classical.WienerRestorer("motion"),
                                      classical.RichardsonLucyRestorer("motion"), classical.BicubicRestorer()])
def test_strength_none_raises(restorer, rng):
    img = rng.random((16, 16, 3)).astype(np.float32)
    with pytest.raises(ValueError, match="non-blind"):
        restorer.restore(img)
    with pytest.raises(ValueError, match="non-blind"):
        restorer.restore_batch(img[None])
    with pytest.raises(ValueError, match="non-blind"):
        classical.classical_estimate(img, restorer.degradation, None)


@pytest.mark.parametrize(("kind", "identity"), [("gaussian", 0), ("motion", 1), ("pixelate", 1)])
def test_identity_strength_returns_input(kind, identity, rng):
    img = rng.random((20, 24, 3)).astype(np.float32)
    for restorer in classical.classical_restorers(kind).values():
        np.testing.assert_array_equal(restorer.restore(img, identity), img)
    np.testing.assert_array_equal(classical.classical_estimate(img, kind, identity), img)


@pytest.mark.parametrize(("kind", "strength"), [("gaussian", 6), ("motion", 21), ("motion", 8), ("pixelate", 8),
                                                ("pixelate", 12)])
def test_odd_sizes_and_borders(small_faces, kind, strength):
    clean = small_faces.image(1)[40:77, 30:83]  # 37 x 53: odd, and smaller than 2x some kernels
    degraded = degrade.quantize(degrade.degrade(clean, kind, strength))
    for name, restorer in classical.classical_restorers(kind).items():
        out = restorer.restore(degraded, strength)
        assert out.shape == clean.shape and out.dtype == np.float32 and np.isfinite(out).all()
        assert out.min() >= 0 and out.max() <= 1
        if name != "none":
            # borders are not worse than the input's own border (no wrap-around or zero-padding ringing)
            edge = np.ones(clean.shape[:2], bool)
            edge[4:-4, 4:-4] = False
            assert np.abs(out - clean)[edge].mean() <= np.abs(degraded - clean)[edge].mean() + 0.01


def test_tiny_image_larger_kernel(rng):
    img = rng.random((5, 7, 3)).astype(np.float32)
    out = classical.WienerRestorer("gaussian").restore(degrade.gaussian(img, 6), 6)
    assert out.shape == img.shape


def test_pixelate_partial_edge_blocks_use_one_sample_each():
    # 10 px with block 4: blocks of 4, 4 and 2 px; the grid has 3 samples, the last centred at x = 8.5
    img = np.zeros((10, 10, 3), np.float32)
    img[:, 8:] = 1.0
    grid = degrade.block_means(degrade.pixelate(img, 4), 4)
    assert grid.shape == (3, 3, 3)
    np.testing.assert_allclose(grid[:, 2], 1.0)
    out = classical.BicubicRestorer().restore(degrade.pixelate(img, 4), 4)
    assert out[:, 9].min() > 0.9  # the partial block's own pixels stay at its value


def test_registry_and_protocol():
    gauss = classical.classical_restorers("gaussian")
    assert list(gauss) == ["wiener", "richardson-lucy", "none"]
    assert list(classical.classical_restorers("pixelate")) == ["bicubic", "none"]
    for restorer in gauss.values():
        assert {"name", "label", "family", "degradations", "uses_strength"} <= set(dir(restorer))
    assert gauss["wiener"].uses_strength and not gauss["none"].uses_strength
    with pytest.raises(ValueError):
        classical.WienerRestorer("pixelate")
    with pytest.raises(ValueError, match="unknown degradation"):
        classical.classical_restorers("jpeg")


def test_wiener_balance_interpolates():
    assert classical.wiener_balance("gaussian", 4) == pytest.approx(1e-4)
    assert 1e-4 > classical.wiener_balance("gaussian", 5) > 3e-5
    assert classical.wiener_balance("gaussian", 0.5) == pytest.approx(1e-2)
