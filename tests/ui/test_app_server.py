"""The app served for real: every API endpoint called through gradio_client with real images."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image
from test_playground import FACE, make_bad_uploads

from deblur import degrade as D
from deblur.io import load_image
from deblur.metrics import psnr


@pytest.fixture
def client(app_server) -> Client:
    """A fresh client (own session, so component bounds start from the layout's)."""
    return Client(app_server[0], verbose=False)


def _slots() -> int:
    from ui.playground import reconstruction_slots

    return reconstruction_slots()


def run_playground(client: Client, path, mode: str, source: str, kind: str, strength: float) -> tuple:
    """Call /playground as the UI does: choosing the degradation first sets the slider's range for the session."""
    client.predict(kind, source, api_name="/strength_range")
    return client.predict(handle_file(str(path)), mode, source, kind, strength, api_name="/playground")


def test_api_lists_the_endpoints(client):
    endpoints = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/playground", "/strength_range", "/audit", "/safety", "/anonymise"} <= endpoints


def test_strength_range_endpoint(client):
    for kind, spec in D.STRENGTHS.items():
        update = client.predict(kind, "clean", api_name="/strength_range")
        assert (update["minimum"], update["maximum"], update["step"]) == (spec.low, spec.high, spec.step)
    # /strength_range (what the page calls when a degradation is picked) narrows this session's slider to that
    # kind's range; a fresh session takes every kind's range (tests/ui/test_errors.py) and the handler checks it
    client.predict("gaussian", "clean", api_name="/strength_range")
    with pytest.raises(Exception, match="greater than maximum"):
        client.predict(handle_file(str(FACE)), "face", "clean", "motion", 15, api_name="/playground")
    out = run_playground(client, FACE, "face", "clean", "motion", 15)
    assert load_image(out[1]).shape == (128, 128, 3)


def test_playground_endpoint_returns_lossless_images_matching_the_table(client):
    out = client.predict(handle_file(str(FACE)), "face", "clean", "gaussian", 3.0, api_name="/playground")
    slots = _slots()
    assert len(out) == 2 + slots + 2
    original_path, degraded_path, sliders, table, reading = out[0], out[1], out[2:2 + slots], out[-2], out[-1]
    assert original_path.endswith(".png") and degraded_path.endswith(".png")
    original, degraded = load_image(original_path), load_image(degraded_path)
    assert original.shape == degraded.shape == (128, 128, 3)
    deg_psnr = psnr(original, degraded)
    assert math.isfinite(deg_psnr) and 20 < deg_psnr < 40
    rows = {row[0]: dict(zip(table["headers"], row, strict=True)) for row in table["data"]}
    assert any(r["family"] == "none" for r in rows.values())
    none = next(r for r in rows.values() if r["family"] == "none")
    assert none["PSNR (dB)"] == pytest.approx(deg_psnr, abs=0.01)
    visible = [s for s in sliders if s["visible"]]
    assert len(visible) == len(rows) - 1  # every restorer but "none"
    for slider in visible:
        left, right = slider["value"]
        assert left.endswith(".png") and right.endswith(".png")
        assert np.array_equal(load_image(left), degraded)
        label = slider["label"].split(": AI reconstruction")[0]
        assert "may invent detail" in slider["label"]
        # PSNR recomputed from the returned file equals the table's (rounded to 0.01 dB): lossless PNG
        assert rows[label]["PSNR (dB)"] == pytest.approx(psnr(original, load_image(right)), abs=0.006)
    assert "Identity distance" in reading


def test_playground_endpoint_already_degraded_mode(client, tmp_path):
    photo = tmp_path / "pixelated.png"
    Image.fromarray((D.pixelate(load_image(FACE), 4) * 255 + 0.5).astype(np.uint8)).save(photo)
    out = run_playground(client, photo, "face", "degraded", "pixelate", 4)
    assert out[0] is None
    table = out[-2]
    col = table["headers"].index("PSNR (dB)")
    assert all(row[col] is None for row in table["data"])  # no original: no reference metrics


@pytest.mark.parametrize(("name", "message"), [
    ("text", "not an image"), ("huge", "megapixels"), ("noface", "Whole image"),
])
def test_bad_uploads_give_clear_errors_and_the_app_keeps_serving(client, tmp_path, name, message):
    bad = make_bad_uploads(tmp_path)
    with pytest.raises(Exception, match=message):
        client.predict(handle_file(str(bad[name])), "face", "clean", "gaussian", 3.0, api_name="/playground")
    out = client.predict(handle_file(str(FACE)), "face", "clean", "gaussian", 2.0, api_name="/playground")
    assert load_image(out[1]).shape == (128, 128, 3)


@pytest.mark.parametrize("name", ["gray", "rgba", "exif"])
def test_awkward_uploads_work_through_the_server(client, tmp_path, name):
    bad = make_bad_uploads(tmp_path)
    out = run_playground(client, bad[name], "face", "clean", "motion", 9)
    assert load_image(out[0]).shape == (128, 128, 3)


def test_audit_endpoint_runs_the_engine_and_serves_the_csv(client):
    import pandas as pd

    from ui.audit_tab import MAX_FIGURES

    out = client.predict(["wiener", "none"], ["motion"], "motion=15", 3, 0, "dlib", None, None, "builtin",
                         api_name="/audit")
    status, table, download, files, plots = out[0], out[1], out[2], out[3], out[4:]
    assert "Audited 3 faces" in status
    assert len(plots) == MAX_FIGURES and any(p is not None for p in plots)
    assert download["visible"]
    groups = pd.read_csv(download["value"])
    assert set(groups["model"]) == {"wiener", "none"} and set(groups["strength"]) == {15.0}
    assert table["headers"][:4] == ["model", "model_family", "degradation", "strength"]
    assert len(table["data"]) == len(groups)
    assert {Path(f).name for f in files} >= {"groups.csv", "per_image.csv"}
    with pytest.raises(Exception, match="Strengths"):
        client.predict(["wiener"], ["motion"], "motion=99", 3, 0, "dlib", None, None, "builtin", api_name="/audit")


def test_import_and_build_load_no_model(tmp_path):
    """Nothing heavy at import or build: no torch, dlib or detector until the first request needs them."""
    import subprocess
    import sys

    code = ("import sys, app; app.build_app(); "
            "heavy = [m for m in ('torch', 'dlib', 'facenet_pytorch') if m in sys.modules]; "
            "assert not heavy, heavy; from deblur.restore import cache_size; assert cache_size() == 0")
    env = {**os.environ, "GRADIO_TEMP_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not list(Path(__file__).resolve().parents[2].glob("*.pyi")), "gradio wrote a .pyi stub into the repo"


def test_identical_uploads_at_the_same_moment_both_get_their_bytes(app_server, monkeypatch):
    """Gradio stores the same bytes uploaded twice as ONE file: the first request deletes it, the second must
    still get the photo (from memory, for a short while), and nothing stays on disk."""
    import httpx

    from ui import uploads

    data = (Path(__file__).resolve().parents[2] / "examples" / "astronaut.png").read_bytes()
    data = data + b"\0"  # not byte-for-byte the public example (those are never deleted)
    url = app_server[0] + "gradio_api/upload"
    paths = [httpx.post(url, files={"files": ("mine.png", data, "image/png")}, timeout=30).json()[0]
             for _ in range(2)]
    assert paths[0] == paths[1], "premise: Gradio keeps identical uploads in one file"
    assert uploads.consume(paths[0]) == data and not Path(paths[0]).exists()
    assert uploads.consume(paths[1]) == data  # the second request, after the first deleted the file
    monkeypatch.setattr(uploads, "SHARED_UPLOAD_S", 0)
    with pytest.raises(Exception, match="no longer on the server"):
        uploads.consume(paths[1])  # past the grace period: gone from memory too
