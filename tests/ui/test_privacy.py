"""Privacy promises checked on disk: the app launched in its own process with its own GRADIO_TEMP_DIR and TMPDIR.

Uploads (a photo with EXIF, a zip of faces, a labels CSV) go in through a fresh ``gradio_client``; once each
request has answered, no file under either folder may hold the uploaded bytes. Derived outputs (crops,
reconstructions, reports, obscured faces) must be gone after their stated lifetime (shortened here through
``FACEDRIFT_OUTPUT_LIFETIME``), and nothing at all may be left once the server has stopped.
"""

from __future__ import annotations

import hashlib
import io
import time
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from bench.server import app_process

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
LIFETIME_S = 6  # output lifetime the test server runs with (the real app: minutes)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def files_under(*folders: Path) -> list[Path]:
    return [p for folder in folders for p in folder.rglob("*") if p.is_file() and not p.is_symlink()]


def data_files(*folders: Path) -> list[Path]:
    """Files that could hold user data: not empty, and not onnxruntime's housekeeping in TMPDIR (an empty
    ``mat-debug-<pid>.log`` and a ``.ses`` session id, written when the age/gender model loads)."""
    return [p for p in files_under(*folders)
            if p.stat().st_size > 0 and p.name != ".ses" and not p.name.startswith("mat-debug-")]


def example_hashes() -> set[str]:
    """The bundled example photos are public and may stay in Gradio's cache (the Examples widget serves them)."""
    return {sha256(p) for p in EXAMPLES.glob("*.png")}


def copies_of(digest: str, *folders: Path) -> list[Path]:
    return [p for p in files_under(*folders) if sha256(p) == digest]


def private_photo(folder: Path, seed: int) -> Path:
    """The astronaut example made unique (one pixel per seed) and saved as JPEG with EXIF: a private upload."""
    img = np.asarray(Image.open(EXAMPLES / "astronaut.png").convert("RGB")).copy()
    img[0, 0] = (seed % 256, (seed * 7) % 256, 11)
    exif = Image.Exif()
    exif[0x010F] = "facedrift-test-camera"  # Make
    exif[0x9003] = "2026:01:01 12:00:00"  # DateTimeOriginal
    path = folder / f"private-{seed}.jpg"
    Image.fromarray(img).save(path, quality=95, exif=exif)
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``python app.py`` in its own process; yields ``(url, gradio_temp_dir, tmpdir, app)``."""
    with app_process(tmp_path_factory.mktemp("privacy"), {"FACEDRIFT_OUTPUT_LIFETIME": str(LIFETIME_S)}) as app:
        yield app.url, app.gradio_tmp, app.tmpdir, app


@pytest.fixture
def client(server, tmp_path) -> Client:
    """A fresh client whose downloads land outside the server's folders (they are the client's copies)."""
    return Client(server[0], verbose=False, download_files=str(tmp_path / "client-downloads"))


def assert_no_copy(upload: Path, server) -> None:
    _, gradio_tmp, tmpdir, _ = server
    found = copies_of(sha256(upload), gradio_tmp, tmpdir)
    assert not found, f"the upload {upload.name} is still on the server's disk: {found}"


def test_photo_upload_is_gone_once_the_playground_answers(server, client, tmp_path):
    photo = private_photo(tmp_path, 1)
    out = client.predict(handle_file(str(photo)), "face", "clean", "gaussian", 3.0, api_name="/playground")
    assert out[0] and out[1]  # answered with images
    assert_no_copy(photo, server)


def test_photo_upload_is_gone_once_the_safety_sweep_answers(server, client, tmp_path):
    photo = private_photo(tmp_path, 2)
    out = client.predict(handle_file(str(photo)), 0.0, api_name="/safety")
    assert out
    assert_no_copy(photo, server)
    _, _, tmpdir, _ = server
    leftovers = data_files(tmpdir)
    assert not leftovers, f"the sweep left files in TMPDIR: {leftovers}"


def test_photo_upload_is_gone_once_anonymise_answers(server, client, tmp_path):
    photo = private_photo(tmp_path, 3)
    out = client.predict(handle_file(str(photo)), "Pixelation", "", api_name="/anonymise")
    assert out[0]
    assert_no_copy(photo, server)
    _, _, tmpdir, _ = server
    leftovers = data_files(tmpdir)
    assert not leftovers, f"anonymising left files in TMPDIR: {leftovers}"


def face_zip(folder: Path) -> tuple[Path, Path]:
    """A zip of three faces (the example faces, made unique) and a labels CSV next to it."""
    zpath, cpath = folder / "faces.zip", folder / "labels.csv"
    with zipfile.ZipFile(zpath, "w") as zf:
        for i, src in enumerate(sorted(EXAMPLES.glob("generated-*.png"))):
            img = np.asarray(Image.open(src).convert("RGB")).copy()
            img[0, 0] = (i, 200, 13)
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="PNG")
            zf.writestr(f"face{i}.png", buf.getvalue())
    cpath.write_text("path,group\nface0.png,a\nface1.png,b\nface2.png,a\n")
    return zpath, cpath


def test_zip_and_csv_uploads_and_reports_are_gone_once_the_audit_answers(server, client, tmp_path):
    zpath, cpath = face_zip(tmp_path)
    out = client.predict(["none"], ["gaussian"], "gaussian=4", 3, 0, "dlib", handle_file(str(zpath)),
                         handle_file(str(cpath)), "builtin", api_name="/audit")
    assert "Audited 3 faces" in out[0]
    assert_no_copy(zpath, server)
    assert_no_copy(cpath, server)
    with zipfile.ZipFile(zpath) as zf:
        for name in zf.namelist():
            digest = hashlib.sha256(zf.read(name)).hexdigest()
            assert not copies_of(digest, server[1], server[2]), f"{name} from the zip is still on disk"
    _, _, tmpdir, _ = server
    leftovers = data_files(tmpdir)
    assert not leftovers, f"the audit left files in TMPDIR (reports, extracted faces): {leftovers}"


def test_derived_outputs_expire_and_nothing_is_left_after_the_server_stops(server, client, tmp_path):
    url, gradio_tmp, tmpdir, app = server
    photo = private_photo(tmp_path, 3)
    out = client.predict(handle_file(str(photo)), "face", "clean", "gaussian", 3.0, api_name="/playground")
    crop = Path(out[0])
    served = httpx.get(f"{url}gradio_api/file={copies_of(sha256(crop), gradio_tmp)[0]}", timeout=10)
    assert served.status_code == 200  # the client can still download its outputs right after the answer
    public = example_hashes()
    deadline = time.monotonic() + LIFETIME_S + 15
    while True:
        left = [p for p in data_files(gradio_tmp, tmpdir) if sha256(p) not in public]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert not left, f"derived outputs outlived their {LIFETIME_S} s lifetime: {left}"
    app.stop()
    left = [p for p in data_files(gradio_tmp, tmpdir) if sha256(p) not in public]
    assert not left, f"files left after the server stopped: {left}"


def test_readme_and_about_tab_state_exactly_what_the_code_keeps():
    import app
    from ui.uploads import MAX_FILE_MB, MEMORY_TTL_S, PRIVACY

    def words(text: str) -> str:
        return " ".join(text.split())

    assert words(PRIVACY) in words((ROOT / "README.md").read_text())
    demo = app.build_app()
    about = " ".join(words(getattr(block, "value", "") or "") for block in demo.blocks.values()
                     if type(block).__name__ == "Markdown")
    assert words(PRIVACY) in about
    assert f"{MAX_FILE_MB} MB" in PRIVACY and f"{MEMORY_TTL_S // 60} minutes" in PRIVACY
    assert "nothing is cached" not in about.lower() and "not kept" not in about.lower()
