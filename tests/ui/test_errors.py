"""Every failure a user can cause gets a message saying what to do: the launched app (gradio_client) and the CLIs.

Each case here was a generic "upstream app raised an exception", a raw traceback, or a silent read outside
the data folder before it was fixed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import launched_app
from gradio_client import Client, handle_file
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
GENERIC = "upstream app raised an exception"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The app launched as ``python app.py`` launches it: without ``show_error``, so an exception that is not a
    ``gr.Error`` reaches the client as Gradio's generic message, as it reaches users. Same process (monkeypatch
    works), own ``GRADIO_TEMP_DIR``."""
    with launched_app(tmp_path_factory.mktemp("gradio-errors"), show_error=False) as (url, _):
        yield url


@pytest.fixture
def client(served, tmp_path) -> Client:
    return Client(served, verbose=False, download_files=str(tmp_path / "downloads"))


def app_error(call) -> str:
    """The message the app answers a failing call with (the test fails if the call succeeds)."""
    with pytest.raises(Exception) as info:  # noqa: PT011 - gradio_client raises AppError with the message
        call()
    message = str(info.value)
    assert GENERIC not in message, f"generic error instead of a message: {message}"
    return message


def test_symlinks_out_of_a_folder_without_labels_are_skipped(tmp_path):
    from audit.data.files import OUTSIDE
    from audit.data.loaders import load_folder

    outside = tmp_path / "outside"
    outside.mkdir()
    Image.open(EXAMPLES / "generated-0.png").save(outside / "secret.png")
    data = tmp_path / "data"
    data.mkdir()
    Image.open(EXAMPLES / "generated-1.png").save(data / "mine.png")
    (data / "link.png").symlink_to(outside / "secret.png")
    (data / "x.png").symlink_to("/etc/passwd")
    (data / "folder").symlink_to(outside, target_is_directory=True)
    faces = load_folder(data)
    assert [Path(p).name for p in faces.frame["path"]] == ["mine.png"]
    assert all(Path(p).resolve().is_relative_to(data.resolve()) for p in faces.frame["path"])
    assert sorted(faces.skipped["path"]) == ["link.png", "x.png"]  # rglob does not enter linked folders
    assert set(faces.skipped["reason"]) == {OUTSIDE}


def tiny_photo(folder: Path) -> Path:
    path = folder / "tiny.png"
    Image.open(EXAMPLES / "astronaut.png").convert("RGB").resize((12, 12)).save(path)
    return path


def test_tiny_image_in_the_playground(client, tmp_path):
    tiny = tiny_photo(tmp_path)
    message = app_error(lambda: client.predict(handle_file(str(tiny)), "face", "clean", "gaussian", 3.0,
                                               api_name="/playground"))
    assert "12×12" in message and "too small" in message
    # whole-image mode has no face to find: it runs, or says why it cannot
    try:
        out = client.predict(handle_file(str(tiny)), "whole", "clean", "pixelate", 4, api_name="/playground")
    except Exception as exc:  # noqa: BLE001
        assert GENERIC not in str(exc)
    else:
        assert out[1]


def test_tiny_image_in_the_safety_tab_without_a_whole_image_hint(client, tmp_path):
    tiny = tiny_photo(tmp_path)
    message = app_error(lambda: client.predict(handle_file(str(tiny)), 0.0, api_name="/safety"))
    assert "too small" in message
    assert "Whole image" not in message  # the safety tab has no such mode


def test_zip_with_a_bad_crc_in_the_audit(client, tmp_path):
    zpath = tmp_path / "faces.zip"
    with zipfile.ZipFile(zpath, "w", compression=zipfile.ZIP_STORED) as zf:
        for i in range(3):
            zf.write(EXAMPLES / f"generated-{i}.png", f"face{i}.png")
    data = bytearray(zpath.read_bytes())
    start = data.index(b"\x89PNG", data.index(b"face1.png"))
    data[start + 200] ^= 0xFF  # one byte of face1.png's stored data: its CRC no longer matches
    zpath.write_bytes(bytes(data))
    with zipfile.ZipFile(zpath) as zf:
        assert zf.testzip() == "face1.png"
    message = app_error(lambda: client.predict(["none"], ["gaussian"], "gaussian=4", 3, 0, "dlib",
                                               handle_file(str(zpath)), None, "builtin", api_name="/audit"))
    assert "damaged" in message and "face1.png" in message


@pytest.fixture
def damaged_dlib(monkeypatch, tmp_path):
    """Point the dlib embedder at a copy of its model folder; the test then removes or truncates a file."""
    from deblur import faces, playground

    models = faces._face_models_dir()
    copy = tmp_path / "models"
    shutil.copytree(models, copy)
    monkeypatch.setattr(faces, "_face_models_dir", lambda: copy)
    faces.dlib_models.cache_clear()
    playground.embedder.cache_clear()
    yield copy
    monkeypatch.undo()
    faces.dlib_models.cache_clear()
    playground.embedder.cache_clear()


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_missing_or_truncated_dlib_model_file(client, damaged_dlib, damage):
    target = damaged_dlib / "dlib_face_recognition_resnet_model_v1.dat"
    if damage == "missing":
        target.unlink()
    else:
        target.write_bytes(target.read_bytes()[: 100_000])
    from deblur.embed import EmbedderUnavailable, get_embedder

    with pytest.raises(EmbedderUnavailable, match="dlib_face_recognition_resnet_model_v1.dat"):
        get_embedder("dlib")
    message = app_error(lambda: client.predict(handle_file(str(EXAMPLES / "generated-0.png")), "face", "clean",
                                               "gaussian", 3.0, api_name="/playground"))
    assert "dlib_face_recognition_resnet_model_v1.dat" in message and "reinstall" in message


def test_unwritable_cache_is_reported_before_any_work(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    cache = blocker / "cache"  # cannot be created, even by root
    from deblur import data

    monkeypatch.setenv("FACEDRIFT_CACHE", str(cache))

    def no_work(*args, **kwargs):
        raise AssertionError("generated faces before checking that the cache can be written")

    monkeypatch.setattr(data, "generate_faces", no_work)
    with pytest.raises(OSError, match="FACEDRIFT_CACHE"):
        data.builtin_faces(n=3, seed=12345)
    env = {**os.environ, "FACEDRIFT_CACHE": str(cache)}
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "audit", "--n", "2", "--models", "none", "--degradations", "gaussian",
                           "--strengths", "4", "--out", str(tmp_path / "out")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert str(cache) in proc.stderr and "FACEDRIFT_CACHE" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert time.monotonic() - start < 60


@pytest.mark.parametrize(("kind", "strength"), [("motion", 31), ("pixelate", 16)])
def test_fresh_client_runs_any_kind_at_full_strength(client, kind, strength):
    out = client.predict(handle_file(str(EXAMPLES / "generated-0.png")), "face", "clean", kind, strength,
                         api_name="/playground")
    table = out[-2]
    assert len(table["data"]) >= 2


def test_out_of_range_strength_gets_a_message(client):
    message = app_error(lambda: client.predict(handle_file(str(EXAMPLES / "generated-0.png")), "face", "clean",
                                               "gaussian", 31, api_name="/playground"))
    assert "31" in message


def test_uploads_over_the_size_limit_are_refused(served, tmp_path):
    from ui.uploads import MAX_FILE_MB

    limit = MAX_FILE_MB * 1024 * 1024
    big = tmp_path / "big.png"
    with big.open("wb") as fh:
        fh.write(np.random.default_rng(0).bytes(1024) * ((limit // 1024) + 1024))
    with big.open("rb") as fh:
        response = httpx.post(f"{served}gradio_api/upload", files={"files": ("big.png", fh)}, timeout=60)
    assert response.status_code == 413, response.text
