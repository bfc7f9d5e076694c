import numpy as np
import pytest

from deblur import degrade as D


@pytest.fixture
def img(rng):
    return rng.random((37, 53, 3), dtype=np.float32)


@pytest.mark.parametrize("kind,identity", [("gaussian", 0), ("pixelate", 1), ("motion", 1)])
def test_identity_strength_returns_the_image(img, kind, identity):
    out = D.degrade(img, kind, identity)
    np.testing.assert_array_equal(out, img)
    assert out is not img


@pytest.mark.parametrize("block", [2, 5, 8, 16])
def test_pixelate_blocks_equal_their_means_including_partial_edges(img, block):
    out = D.pixelate(img, block)
    h, w = img.shape[:2]
    for y in range(0, h, block):
        for x in range(0, w, block):
            tile = img[y:y + block, x:x + block]
            np.testing.assert_allclose(out[y:y + block, x:x + block], np.broadcast_to(tile.mean((0, 1)), tile.shape),
                                       atol=1e-6)


def test_motion_kernel_sums_to_one_and_blurs_only_horizontally(rng):
    k = D.motion_psf(9)
    assert k.shape == (1, 9) and np.isclose(k.sum(), 1) and np.allclose(k, 1 / 9)
    # an image constant along each row is unchanged: no vertical mixing
    rows = np.repeat(rng.random((40, 1, 3), dtype=np.float32), 30, axis=1)
    np.testing.assert_allclose(D.motion(rows, 9), rows, atol=1e-6)
    # a single bright pixel spreads over 9 pixels of its row only
    dot = np.zeros((21, 21, 3), np.float32)
    dot[10, 10] = 1
    out = D.motion(dot, 9)
    assert np.count_nonzero(out[:, :, 0] > 1e-7) == 9
    assert np.all(out[10, 6:15, 0] > 0.11) and np.allclose(np.delete(out, 10, axis=0), 0)


def test_motion_matches_study_formula_away_from_borders(img):
    n = 5
    out = D.motion(img, n)
    x = 20  # centred kernel: x-2..x+2
    np.testing.assert_allclose(out[:, x], img[:, x - 2:x + 3].mean(axis=1), atol=1e-6)


def test_gaussian_kernel_normalised_and_blur_preserves_mean(img):
    k = D.gaussian_psf(2.0)
    assert np.isclose(k.sum(), 1, atol=1e-6) and k.shape == (17, 17)
    np.testing.assert_allclose(k, k.T)
    flat = np.full((30, 30, 3), 0.4, np.float32)
    np.testing.assert_allclose(D.gaussian(flat, 3.0), flat, atol=1e-6)
    # stronger blur, less detail
    assert D.gaussian(img, 4).std() < D.gaussian(img, 1).std() < img.std()


@pytest.mark.parametrize("kind,bad", [("gaussian", -1), ("gaussian", float("nan")), ("pixelate", 0), ("pixelate", 2.5),
                                      ("motion", 0), ("motion", 3.5), ("motion", "7"), ("pixelate", True)])
def test_bad_strength_raises_value_error(img, kind, bad):
    with pytest.raises(ValueError, match=kind):
        D.degrade(img, kind, bad)


def test_unknown_degradation_is_named(img):
    with pytest.raises(ValueError, match="gaussian"):
        D.degrade(img, "jpeg", 3)
    with pytest.raises(ValueError, match="PSF"):
        D.psf("pixelate", 4)


def test_box_degrades_only_inside(img):
    box = (10, 5, 40, 30)
    for kind, s in [("gaussian", 3), ("pixelate", 4), ("motion", 7)]:
        out = D.degrade(img, kind, s, box=box)
        outside = np.ones(img.shape[:2], bool)
        outside[5:30, 10:40] = False
        np.testing.assert_array_equal(out[outside], img[outside])
        assert not np.allclose(out[5:30, 10:40], img[5:30, 10:40])
    # pixel blocks start at the box corner
    out = D.degrade(img, "pixelate", 5, box=box)
    np.testing.assert_allclose(out[5:10, 10:15], np.broadcast_to(img[5:10, 10:15].mean((0, 1)), (5, 5, 3)), atol=1e-6)
    with pytest.raises(ValueError, match="overlap"):
        D.degrade(img, "gaussian", 1, box=(100, 100, 120, 120))


def test_as_image_converts_gray_rgba_uint8_and_rejects_bad_input():
    gray = np.full((4, 5), 128, np.uint8)
    out = D.as_image(gray)
    assert out.shape == (4, 5, 3) and out.dtype == np.float32 and np.allclose(out, 128 / 255)
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = 255
    rgba[0, 0, 3] = 0  # transparent pixel becomes white
    out = D.as_image(rgba)
    assert out.shape == (4, 5, 3) and np.allclose(out[1, 1], [1, 0, 0]) and np.allclose(out[0, 0], 1)
    with pytest.raises(ValueError, match="empty"):
        D.as_image(np.zeros((0, 5, 3), np.float32))
    with pytest.raises(ValueError, match="shape"):
        D.as_image(np.zeros((4, 5, 2), np.float32))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        D.as_image(np.full((4, 5, 3), 200.0))
    with pytest.raises(ValueError, match="NaN"):
        D.as_image(np.full((4, 5, 3), np.nan, np.float32))
    with pytest.raises(TypeError, match="dtype"):
        D.as_image(np.zeros((4, 5, 3), np.complex64))
    with pytest.raises(TypeError, match="numpy"):
        D.gaussian([[0.1, 0.2]], 1)


def test_random_strength_needs_a_generator_and_is_reproducible():
    a = [D.random_strength("motion", np.random.default_rng(3)) for _ in range(2)]
    assert a[0] == a[1] and 1 <= a[0] <= 31 and float(a[0]).is_integer()
    s = D.random_strength("gaussian", np.random.default_rng(1), 1.0, 2.0)
    assert 1.0 <= s <= 2.0
    with pytest.raises(TypeError, match="Generator"):
        D.random_strength("gaussian", 42)
    with pytest.raises(ValueError, match="empty"):
        D.random_strength("gaussian", np.random.default_rng(0), 3, 2)


def test_quantize_rounds_to_8_bits(img):
    q = D.quantize(img)
    np.testing.assert_allclose(q * 255, np.round(q * 255), atol=1e-4)
    assert np.abs(q - img).max() <= 0.5 / 255 + 1e-6


def test_separable_gaussian_equals_the_2d_psf_correlation(img):
    from scipy import ndimage

    for sigma in (0.7, 2.0, 5.5):
        full = ndimage.correlate(img, D.gaussian_psf(sigma)[:, :, None], mode="reflect")
        np.testing.assert_allclose(D.gaussian(img, sigma), np.clip(full, 0, 1), atol=2e-6)


def test_to_uint8_rounds_to_nearest_level_and_validates():
    img = np.array([[[0.0, 0.5 / 255 + 1e-4, 1.0]]], np.float32)
    np.testing.assert_array_equal(D.to_uint8(img), [[[0, 1, 255]]])
    np.testing.assert_array_equal(D.to_uint8(np.full((2, 2), 7, np.uint8)), np.full((2, 2, 3), 7, np.uint8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        D.to_uint8(np.full((2, 2, 3), 2.0, np.float32))
