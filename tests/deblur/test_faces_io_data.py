import io

import numpy as np
import pytest
from PIL import Image

from deblur import data, faces
from deblur.io import ImageError, decode_image, encode_png, load_image


def test_mtcnn_and_haar_find_the_astronaut_face(astronaut):
    for method in faces.DETECTORS:
        found = faces.detect_faces(astronaut, method)
        assert found, method
        x0, y0, x1, y1 = found[0].box
        # her face is around x 180-270, y 60-170 in skimage's astronaut photo
        assert 150 < (x0 + x1) / 2 < 260 and 80 < (y0 + y1) / 2 < 150, (method, found[0].box)
    assert faces.detect_faces(astronaut, "mtcnn")[0].landmarks.shape == (5, 2)


def test_crop_is_aligned_and_pastes_back(astronaut):
    crop = faces.face_crop(astronaut, size=128)
    assert crop.image.shape == (128, 128, 3)
    eyes = crop.face.landmarks[:2]
    mapped = eyes @ crop.matrix[:, :2].T + crop.matrix[:, 2]
    assert abs(mapped[0, 1] - mapped[1, 1]) < 2  # eyes level in the crop
    back = faces.paste_face(astronaut, crop.image, crop)
    assert back.shape == astronaut.shape
    assert np.abs(back - astronaut).mean() < 0.003  # round trip changes little
    # a visibly changed crop changes only the face region
    changed = faces.paste_face(astronaut, np.zeros_like(crop.image), crop)
    diff = np.abs(changed - astronaut).sum(axis=2) > 0.1
    ys, xs = np.nonzero(diff)
    assert 150 < xs.mean() < 260 and diff.mean() < 0.15  # face region only, not the photo


def test_no_face_raises_clear_error():
    blank = np.full((200, 200, 3), 0.5, np.float32)
    assert faces.detect_faces(blank) == []
    assert not faces.haar_has_face(blank)
    with pytest.raises(faces.NoFaceError, match="no face"):
        faces.face_crop(blank)
    with pytest.raises(ValueError, match="detector"):
        faces.detect_faces(blank, "yolo")


def test_paste_face_checks_shapes(astronaut):
    crop = faces.face_crop(astronaut)
    with pytest.raises(ValueError, match="photo"):
        faces.paste_face(astronaut[:100], crop.image, crop)
    with pytest.raises(ValueError, match="crop"):
        faces.paste_face(astronaut, crop.image[:50], crop)


def _png_bytes(arr, mode=None, exif=None):
    buf = io.BytesIO()
    im = Image.fromarray(arr, mode) if mode else Image.fromarray(arr)
    im.save(buf, format="JPEG" if exif else "PNG", **({"exif": exif} if exif else {}))
    return buf.getvalue()


def test_load_image_handles_gray_rgba_exif_and_bad_files(tmp_path):
    gray = tmp_path / "g.png"
    gray.write_bytes(_png_bytes(np.full((10, 20), 100, np.uint8)))
    assert load_image(gray).shape == (10, 20, 3)
    rgba = tmp_path / "a.png"
    rgba.write_bytes(_png_bytes(np.zeros((10, 20, 4), np.uint8)))
    assert np.allclose(load_image(rgba), 1.0)  # fully transparent -> white
    # EXIF orientation 6 (rotate 90° clockwise to display): a 10x20 stored image displays as 20x10
    exif = Image.Exif()
    exif[0x0112] = 6
    rot = tmp_path / "r.jpg"
    rot.write_bytes(_png_bytes(np.zeros((10, 20, 3), np.uint8), exif=exif.tobytes()))
    assert load_image(rot).shape == (20, 10, 3)
    fake = tmp_path / "notes.png"
    fake.write_text("this is not an image")
    with pytest.raises(ImageError, match="not an image"):
        load_image(fake)
    with pytest.raises(FileNotFoundError):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ImageError, match="empty"):
        decode_image(b"")


def test_huge_image_is_refused_before_decoding(tmp_path):
    # a 10000x10000 PNG compresses to a few hundred kB: a decompression bomb for a naive server
    big = tmp_path / "big.png"
    Image.new("L", (10000, 10000)).save(big)
    with pytest.raises(ImageError, match="megapixels"):
        load_image(big)


def test_encode_png_round_trips_8_bit():
    img = np.random.default_rng(0).integers(0, 256, (8, 9, 3)).astype(np.uint8)
    back = decode_image(encode_png(img))
    np.testing.assert_allclose(back * 255, img, atol=1e-3)
    assert b"eXIf" not in encode_png(img) and b"tEXt" not in encode_png(img)


def test_generated_faces_are_deterministic_per_index():
    a = data.generate_faces(4, seed=5)
    b = data.generate_faces(2, seed=5, start=2)
    assert a.shape == (4, 128, 128, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a[2:], b)
    assert not np.array_equal(a, data.generate_faces(4, seed=6))


def test_builtin_set_is_filtered_split_and_cached(small_faces, tmp_path, monkeypatch):
    assert len(small_faces) == 64 and small_faces.images.shape == (64, 128, 128, 3)
    assert 0.3 < small_faces.meta["kept_fraction"] < 1.0
    assert set(small_faces.split) == {"train", "val", "test"}
    assert sum(small_faces.split == "train") == round(0.8 * 64)
    assert len(set(small_faces.ids)) == 64
    monkeypatch.setenv("FACEDRIFT_CACHE", str(tmp_path))
    again = data.builtin_faces(n=64, seed=0)
    np.testing.assert_array_equal(again.images, small_faces.images)
    assert again.ids == small_faces.ids and list(again.split) == list(small_faces.split)
    assert list(tmp_path.glob("builtin-*.npz"))
    cached = data.builtin_faces(n=64, seed=0)  # now from the cache file
    np.testing.assert_array_equal(cached.images, small_faces.images)
    test = small_faces.subset("test")
    assert set(test.split) == {"test"} and test.floats().dtype == np.float32
    with pytest.raises(ValueError, match="split"):
        small_faces.subset("holdout")
