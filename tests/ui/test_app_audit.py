"""Audit-tab handlers called directly: a tiny real audit on built-in faces and on an uploaded zip."""

from __future__ import annotations

import csv
import tempfile
import zipfile
from pathlib import Path

import gradio as gr
import pandas as pd
import pytest
from PIL import Image

from ui import audit_tab as H

TINY = {"models": ["wiener", "none"], "kinds": ["gaussian"], "strengths": "gaussian=4", "n": 4, "seed": 0}


@pytest.fixture
def private_tmp(tmp_path, monkeypatch) -> Path:
    """Route tempfile.mkdtemp into tmp_path, so leftovers of a request can be checked."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def test_strengths_text_uses_the_cli_parser_and_ignores_unticked_kinds():
    assert H.parse_strengths_text(["gaussian"], H.DEFAULT_STRENGTHS) == {"gaussian": (2.0, 4.0, 6.0)}
    assert H.parse_strengths_text(["motion", "pixelate"], "3") == {"motion": (3.0,), "pixelate": (3.0,)}
    with pytest.raises(gr.Error, match="Strengths"):
        H.parse_strengths_text(["gaussian"], "gaussian=two")
    with pytest.raises(gr.Error, match="at least one degradation"):
        H.parse_strengths_text([], "2")


def test_model_choices_need_no_model_loading_and_follow_the_degradations():
    from deblur.restore import restorer_names

    names = {name for _, name in H.model_choices()}
    assert {"wiener", "richardson-lucy", "bicubic", "none"} <= names and names == set(restorer_names())
    gaussian = dict((name, label) for label, name in H.model_choices(["gaussian"]))
    assert "bicubic" not in gaussian and "resunet-pixelate" not in gaussian and "resunet-gaussian" in gaussian
    assert gaussian["wiener"] == "Wiener deconvolution (known kernel)"  # labels, not internal keys
    assert all(label != name for name, label in gaussian.items())
    update = H.restorer_update(["pixelate"], ["wiener", "bicubic"])
    assert update["value"] == ["bicubic"] and "wiener" not in {n for _, n in update["choices"]}


def test_tiny_builtin_audit_reports_groups_figures_and_files(private_tmp):
    calls = []
    run = H.run_audit_request(**TINY, progress=lambda stage, done, total: calls.append((stage, done, total)))
    assert ("clean", 4, 4) in calls and any(stage == "audit" for stage, _, _ in calls)
    assert not run.table.empty and set(run.table["model"]) == {"wiener", "none"}
    assert set(run.table["degradation"]) == {"gaussian"} and set(run.table["strength"]) == {4.0}
    assert run.groups_csv is not None and run.groups_csv.is_file()
    assert pd.read_csv(run.groups_csv).shape == run.table.shape
    assert {p.name for p in run.files} >= {"groups.csv", "per_image.csv"}
    assert run.figures and all(hasattr(f, "to_plotly_json") for f in run.figures)
    assert "Audited 4 faces" in run.status and "predicted" in run.status
    ui = H.outputs_for_ui(run)
    assert len(ui) == 4 + H.MAX_FIGURES
    assert list(ui[1].columns) == [c for c in H.TABLE_COLUMNS if c in run.table]
    assert ui[2]["visible"] and ui[2]["value"] == str(run.groups_csv)
    visible = [u for u in ui[4:] if u["visible"]]
    assert len(visible) == min(len(run.figures), H.MAX_FIGURES)


def _labelled_zip(folder: Path, n: int = 4, evil: bool = False) -> tuple[Path, Path]:
    """A zip of n example-like faces (folder format) and its labels CSV."""
    from deblur.data import builtin_faces

    faces = builtin_faces(n=4000, seed=0).subset("test")
    archive, labels = folder / "faces.zip", folder / "labels.csv"
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(n):
            img = folder / f"face{i}.png"
            Image.fromarray(faces.images[i]).save(img)
            zf.write(img, f"faces/face{i}.png")
        if evil:
            zf.writestr("../../escape.txt", "zip slip")
    with labels.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "group"])
        writer.writerows([f"face{i}.png", "a" if i % 2 else "b"] for i in range(n))
    return archive, labels


def test_uploaded_zip_is_audited_with_its_labels_then_deleted(private_tmp, tmp_path):
    archive, labels = _labelled_zip(tmp_path)
    run = H.run_audit_request(**TINY, data_zip=str(archive), labels_csv=str(labels))
    assert {"a", "b"} <= set(run.table["group"])
    assert "label" in set(run.table["label_source"])
    assert "your upload" in run.status
    assert not list(private_tmp.rglob("upload")), "the uploaded faces must not outlive the request"
    assert {"faces.csv", "groups.csv", "per_image.csv"} <= {p.name for p in run.files}  # offered for download


def test_upload_is_refused_on_spaces_and_unsafe_zips_are_rejected(private_tmp, tmp_path):
    archive, labels = _labelled_zip(tmp_path, n=2, evil=True)
    with pytest.raises(gr.Error, match="locally"):
        H.run_audit_request(**TINY, data_zip=str(archive), labels_csv=str(labels), allow_upload=False)
    with pytest.raises(gr.Error, match="unsafe path"):
        H.run_audit_request(**TINY, data_zip=str(archive), labels_csv=str(labels))
    assert not (tmp_path.parent / "escape.txt").exists()
    assert not list(private_tmp.rglob("upload"))
    not_zip = tmp_path / "data.zip"
    not_zip.write_text("not a zip")
    with pytest.raises(gr.Error, match="not a readable .zip"):
        H.run_audit_request(**TINY, data_zip=str(not_zip))


def test_bad_settings_raise_clear_errors(private_tmp):
    with pytest.raises(gr.Error, match="Sample size"):
        H.run_audit_request(**{**TINY, "n": 0})
    with pytest.raises(gr.Error, match="from 0 to 8, got 99"):
        H.run_audit_request(**{**TINY, "strengths": "gaussian=99"})
    with pytest.raises(gr.Error, match="whole number"):
        H.run_audit_request(**{**TINY, "kinds": ["pixelate"], "strengths": "pixelate=2.5"})
    with pytest.raises(gr.Error, match="could not run"):
        H.run_audit_request(**{**TINY, "models": ["pulse"]})


def test_fairface_offline_is_a_clear_error_never_a_silent_switch(monkeypatch, tmp_path):
    import huggingface_hub

    def offline(*args, **kwargs):
        raise ConnectionError("no route to the Hub")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    monkeypatch.setenv("FACEDRIFT_CACHE", str(tmp_path))  # no cached copy either
    with pytest.raises(gr.Error, match="(?s)Could not download FairFace.*built-in"):
        H.run_audit_request(**TINY, dataset="fairface")
    with pytest.raises(gr.Error, match="face set"):
        H.run_audit_request(**TINY, dataset="celeba-online")
