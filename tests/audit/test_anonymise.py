"""The anonymiser: every face of a group photo obscured, verified by every attacker, metadata-free PNG, report."""

from __future__ import annotations

import functools
import importlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from audit.safety.attackers import GalleryFaces, attack_context
from audit.safety.gallery import gallery_from_faces
from deblur.embed import get_embedder
from deblur.io import load_image

anon = importlib.import_module("audit.safety.anonymise")  # the module (the package re-exports its function)


@pytest.fixture(scope="module")
def group():
    return anon.example_group_photo()


@pytest.fixture(scope="module")
def small_context(small_faces):
    """32 built-in faces as the attackers' gallery and 16 as candidates (the default is 200 / 50; same code)."""
    gallery = gallery_from_faces(small_faces, get_embedder("dlib"), n=32)
    cands = GalleryFaces(tuple(small_faces.ids[:16]), small_faces.images[:16])
    return functools.partial(attack_context, gallery=gallery, candidates=cands, fill="black")


@pytest.fixture(scope="module")
def result(group, small_context):
    return anon.anonymise(group[0], context=small_context)


def test_every_face_found_obscured_and_verified_by_every_attacker(group, result):
    photo, names = group
    assert len(result.faces) == len(names) == 6
    for f in result.faces:
        assert f.verdict in ("safe", "filled"), f.attempts
        expected = {"parrot"} if f.kind == "fill" else {"restore", "parrot", "unknown-kernel", "learned"}
        assert set(f.rows["attacker"]) == expected, f.attempts
        final = f.rows
        assert not ((final["distance"] <= final["threshold"]).fillna(False) | final["rank1"]).any(), f.attempts
    x0, y0, x1, y1 = (int(v) for v in result.faces[0].box)
    assert np.abs(result.image[y0:y1, x0:x1] - photo[y0:y1, x0:x1]).mean() > 0.05  # the face changed
    assert np.array_equal(result.image[:5, :5], photo[:5, :5])  # the background did not


def test_independent_dlib_pipeline_finds_nobody(group, result):
    check = anon.independent_check(group[0], result.image)
    assert check["faces_original"] >= 4, "dlib's HOG must see the people in the original, or the check is vacuous"
    assert check["matches"] == [], check


def test_independent_check_tells_untouched_detections_from_reidentified_faces():
    """An untouched photo is all matches at distance 0: re-identified when we claim to have obscured the face,
    'unobscured' (for the user to look at) when dlib's face lies outside every obscured box."""
    photo = load_image(Path(__file__).resolve().parents[2] / "examples" / "astronaut.png")
    face = (175, 76, 265, 166)  # dlib's own box of the astronaut's face
    claimed = anon.independent_check(photo, photo, obscured=[face])
    assert claimed["faces_original"] == 2  # the face and the mission patch (a HOG false detection)
    assert len(claimed["reidentified"]) == 1 and claimed["unobscured"] == [(126, 335, 215, 425)]
    untouched = anon.independent_check(photo, photo, obscured=[])
    assert untouched["reidentified"] == [] and len(untouched["unobscured"]) == 2
    assert anon.independent_check(photo, photo)["reidentified"] == claimed["matches"]  # no boxes: every match counts


def test_png_has_no_metadata_and_report_has_one_row_per_face(result):
    data = result.png()
    with Image.open(io.BytesIO(data)) as im:
        assert not im.info and not im.getexif()
    rep = result.report()
    assert len(rep) == 6 and {"verdict", "kind", "strength_crop_px", "closest_attacker"} <= set(rep.columns)


def test_hand_drawn_box_and_bad_boxes(small_context):
    photo = np.full((200, 300, 3), 0.5, np.float32)  # no face a detector could find
    res = anon.anonymise(photo, boxes=[(100, 50, 180, 130)], context=small_context)
    assert [f.source for f in res.faces] == ["manual"]
    with pytest.raises(ValueError, match="outside"):
        anon.anonymise(photo, boxes=[(400, 10, 500, 90)], verify=False)
    for bad in ("1,2,3", "5,5,1,1", "a,b,c,d"):
        with pytest.raises(ValueError, match="x0,y0,x1,y1|x1 must be"):
            anon.parse_box(bad)


def test_cli_writes_png_and_report(tmp_path, monkeypatch, small_context, group):
    from deblur.io import save_png

    monkeypatch.setattr(anon, "attack_context", small_context)
    src = save_png(group[0][:224, :448], tmp_path / "two.png")
    assert anon.anonymise_file(src, tmp_path / "safe.jpg") == 2  # PNG only
    out = tmp_path / "safe.png"
    assert anon.anonymise_file(src, out, boxes=["1,1,20,20"]) == 0
    report = json.loads(out.with_suffix(".report.json").read_text())
    assert len(report["faces"]) == 3 and report["independent_dlib_check"]["matches"] == []
    blank = save_png(np.full((64, 64, 3), 0.4, np.float32), tmp_path / "blank.png")
    assert anon.anonymise_file(blank, tmp_path / "b.png") == 3 and not (tmp_path / "b.png").exists()
