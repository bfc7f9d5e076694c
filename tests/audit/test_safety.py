"""'Is this blur safe?': known answers of the sweep, the recommendation rule, outputs, and the app endpoint."""

from __future__ import annotations

import io
import math
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from audit import safety
from audit.safety.attackers import RestoreAttacker, default_restorers
from deblur import degrade
from deblur.io import load_image

FACE = Path(__file__).resolve().parents[2] / "examples" / "generated-1.png"  # seed 2024: not in the gallery


@pytest.fixture(scope="module")
def embedder():
    from deblur.embed import get_embedder

    return get_embedder("dlib")


@pytest.fixture(scope="module")
def gallery(small_faces, embedder):
    """24 built-in faces as the attacker's gallery (the real default is 200; same code)."""
    return safety.gallery_from_faces(small_faces, embedder, n=24)


@pytest.fixture(autouse=True)
def restore_attacker_only(monkeypatch):
    """These tests check the sweep and the recommendation rule with the restore-then-match attacker alone (fast);
    the parrot, unknown-kernel and learned attackers are tested in test_attackers.py."""
    monkeypatch.setattr(safety.sweep, "default_attackers",
                        lambda kinds, plan=None, **kw: [RestoreAttacker(plan or default_restorers(list(kinds)))])


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    return load_image(FACE)


@pytest.fixture(scope="module")
def blur_sweep(face, gallery, embedder) -> safety.SweepResult:
    """Gaussian and pixelation over their whole range, classical restorers + none."""
    return safety.sweep_face(face, gallery=gallery, embedder=embedder, degradations=["gaussian", "pixelate"],
                             strengths={"gaussian": (0, 2, 4, 6, 8, 12), "pixelate": (1, 4, 8, 12, 16)},
                             attackers=[RestoreAttacker(default_restorers(["gaussian", "pixelate"]))])


def png_chunks(data: bytes) -> list[str]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, names = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        names.append(data[pos + 4:pos + 8].decode("ascii"))
        pos += 12 + length
    return names


# ---------------------------------------------------------------------------------------------------------------
# Known answers


def test_identity_strength_every_restorer_reidentifies(face, gallery, embedder):
    res = safety.sweep_face(face, gallery=gallery, embedder=embedder, degradations=["gaussian", "pixelate", "motion"],
                            strengths={"gaussian": [0], "pixelate": [1], "motion": [1]})
    t = res.table
    assert set(t["degradation"]) == {"gaussian", "pixelate", "motion"}
    assert {"wiener", "bicubic", "none"} <= set(t["restorer"])
    assert t["status"].eq("ok").all()
    assert t["reidentified"].all() and t["rank1"].all()
    # the person is matched through a second view (re-captured), never through this very photo
    assert (t["second_view"] == "recapture").all()
    emb = embedder.embed(face)
    second = embedder.embed(safety.attack_context(face, gallery=gallery).reference)
    assert np.allclose(t.loc[t["restorer"] == "none", "distance"], np.linalg.norm(emb - second), atol=1e-6)
    assert 0.02 < np.linalg.norm(emb - second) < 0.45
    assert all(rec.strength is None for rec in res.recommendations.values())
    # identical outputs are embedded once: classical restorers and "none" return the input itself at identity
    # strength (one embedding) plus the second view; each learned model's output differs slightly
    learned_rows = int((t["family"] == "learned").sum())
    assert res.n_embeddings == 2 + learned_rows


@pytest.mark.parametrize("colour", ["mean", "black"])
def test_solid_fill_defeats_every_restorer(face, gallery, embedder, colour):
    res = safety.sweep_face(face, gallery=gallery, embedder=embedder, degradations=["fill"], fill=colour)
    t = res.table
    assert len(t) >= 3 and "none" in set(t["restorer"])
    assert not t["reidentified"].any()
    assert not t["rank1"].any()
    assert res.recommendations["fill"].strength == 1.0
    assert np.ptp(res.obscured("fill").reshape(-1, 3), axis=0).max() == 0  # one colour


def test_pixelation_plus_noise_defeats_every_restorer(face, gallery, embedder):
    res = safety.sweep_face(face, gallery=gallery, embedder=embedder, degradations=["pixelate_noise"],
                            strengths={"pixelate_noise": [8]})
    assert not res.table["reidentified"].any()
    assert res.recommendations["pixelate_noise"].strength == 8


def test_blur_is_undone_where_plain_blur_looks_safe(blur_sweep):
    """The reason for the tool: the known-kernel restorer keeps identity closer than the blurred image itself."""
    g = blur_sweep.table[blur_sweep.table["degradation"] == "gaussian"].pivot(index="strength", columns="restorer",
                                                                             values="distance")
    # (at σ 2 the blurred photo itself is as close to the re-captured second view, which is softer too)
    assert (g.loc[[4, 6], "wiener"] < g.loc[[4, 6], "none"]).all()


def test_recommended_strength_monotone_in_margin(blur_sweep):
    inf = math.inf
    found_any = False
    for kind in ("gaussian", "pixelate"):
        previous = -inf
        for margin in np.linspace(0, 0.5, 11):
            rec = blur_sweep.with_margin(float(margin)).recommendations[kind]
            value = inf if rec.strength is None else rec.strength
            found_any |= margin == 0 and rec.strength is not None
            assert value >= previous, (kind, margin)
            previous = value
        assert blur_sweep.with_margin(2.0).recommendations[kind].strength is None  # above every distance
    assert found_any, "no recommendation at margin 0: the monotonicity check would be vacuous"


def test_recommend_rule_known_answer():
    # strength 2 is safe, 3 is re-identified by rank-1 only, 4 and 5 are safe: recommended 4, first safe 2
    rows = []
    for s, (d_a, d_b, r1) in {1: (0.1, 0.2, True), 2: (0.8, 0.9, False), 3: (0.8, 0.9, True),
                              4: (0.7, 0.8, False), 5: (0.9, 0.9, False)}.items():
        rows += [{"degradation": "gaussian", "strength": s, "restorer": "a", "distance": d_a, "threshold": 0.5,
                  "rank1": r1},
                 {"degradation": "gaussian", "strength": s, "restorer": "b", "distance": d_b, "threshold": 0.5,
                  "rank1": False}]
    table = pd.DataFrame(rows)
    rec = safety.recommend(table)["gaussian"]
    assert (rec.strength, rec.first_safe, rec.tested_max) == (4, 2, 5)
    assert "re-identified again" in rec.explanation
    assert safety.recommend(table, margin=0.25)["gaussian"].strength == 5  # 0.7 <= 0.75 now matches
    no_face = table.assign(distance=np.nan, rank1=False)  # the embedder finds no face anywhere: nothing matches
    assert safety.recommend(no_face)["gaussian"].strength == 1
    none = safety.recommend(table, margin=1.0)["gaussian"]
    assert none.strength is None and "No tested" in none.explanation


# ---------------------------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize("kwargs, match", [
    ({"degradations": ["swirl"]}, "unknown degradation"),
    ({"degradations": []}, "no degradation"),
    ({"degradations": ["gaussian"], "strengths": {"gaussian": []}}, "empty"),
    ({"degradations": ["gaussian"], "strengths": {"gaussian": [-1]}}, ">= 0"),
    ({"degradations": ["pixelate"], "strengths": {"pixelate": [2.5]}}, "whole number"),
    ({"degradations": ["gaussian"], "strengths": {"motion": [9]}}, "not among"),
    ({"degradations": ["gaussian"], "margin": -0.1}, "margin"),
])
def test_bad_inputs_raise(face, gallery, embedder, kwargs, match):
    with pytest.raises(ValueError, match=match):
        safety.sweep_face(face, gallery=gallery, embedder=embedder, **kwargs)


def test_bad_obscuring_inputs(face):
    with pytest.raises(TypeError, match="Generator"):
        degrade.pixelate_noise(face, 8, rng=0)
    with pytest.raises(ValueError, match="fill colour"):
        degrade.solid_fill(face, "pink")
    with pytest.raises(ValueError, match="margin"):
        safety.recommend(pd.DataFrame(), margin=float("nan"))


def test_crop_without_face_raises(gallery, embedder):
    with pytest.raises(ValueError, match="no face"):
        safety.sweep_face(np.full((128, 128, 3), 0.5, np.float32), gallery=gallery, embedder=embedder,
                          degradations=["gaussian"], strengths={"gaussian": [2]})


def test_pixelate_noise_is_seeded(face):
    a = safety.obscure(face, "pixelate_noise", 8, seed=3)
    assert np.array_equal(a, safety.obscure(face, "pixelate_noise", 8, seed=3))
    assert not np.array_equal(a, safety.obscure(face, "pixelate_noise", 8, seed=4))
    assert np.array_equal(a * 255, np.round(a * 255))  # 8-bit, as saved


# ---------------------------------------------------------------------------------------------------------------
# Outputs


def test_png_has_no_metadata_and_matches(blur_sweep):
    # the kind with a safe strength in this small gallery (with the round-two crop geometry, identity survives
    # pixel blocks of 16 for this face: rank-1 among 25 faces after the U-Net)
    kind = next(k for k, rec in blur_sweep.recommendations.items() if rec.strength is not None)
    data = blur_sweep.png(kind)
    assert data is not None
    chunks = png_chunks(data)
    assert set(chunks) <= {"IHDR", "IDAT", "IEND"}, chunks
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        assert not im.info.get("exif") and not im.getexif()
        decoded = np.asarray(im.convert("RGB"), np.float32) / 255.0
    assert np.array_equal(decoded, blur_sweep.obscured(kind))


def test_tidy_table_and_figure(blur_sweep):
    t = blur_sweep.table
    for col in ("degradation", "strength", "attacker", "restorer", "distance", "threshold", "margin", "rank1",
                "reidentified", "second_view"):
        assert col in t.columns
    assert t["threshold"].nunique() == 1 and 0.2 < t["threshold"].iloc[0] < 1.0
    fig = safety.figure(blur_sweep, "gaussian")
    names = {tr.name for tr in fig.data}
    g = t[t["degradation"] == "gaussian"]
    assert names == {f"{a}: {r}" for a, r in zip(g["attacker"], g["restorer"], strict=True)}
    assert any(getattr(s, "y0", None) == 0 for s in fig.layout.shapes)  # each attacker matches below 0
    with pytest.raises(ValueError, match="not swept"):
        safety.figure(blur_sweep, "motion")
    summary = blur_sweep.summary()
    assert list(summary["degradation"]) == ["gaussian", "pixelate"]


def test_query_duplicate_in_gallery_is_dropped(gallery, small_faces, embedder):
    """Uploading a face that is already in the gallery (another id) must not make rank-1 point elsewhere."""
    emb = gallery.embeddings[0]
    g = safety.with_query(gallery, emb, "upload")
    assert gallery.ids[0] not in g.ids and g.ids[-1] == "upload" and len(g.ids) == len(gallery.ids)
    assert g.rank1(emb, "upload")


def test_dataset_mode_per_group(small_faces, gallery, embedder, tmp_path):
    faces = [(small_faces.ids[i], small_faces.image(i), {"fixture_group": "a" if i % 2 else "b"}) for i in range(4)]
    ds = safety.sweep_dataset(faces, embedder=embedder, gallery=gallery, degradations=["pixelate"],
                              strengths={"pixelate": (2, 8, 16)}, n_boot=50)
    assert len(ds.per_face) == 4 and "safe_pixelate" in ds.per_face
    assert ds.group_columns["fixture_group"] == "label"
    assert ds.group_columns["pred_gender"] == "prediction"
    g = ds.groups
    assert set(g["attribute"]) >= {"all", "fixture_group", "pred_gender"}
    all_row = g[g["attribute"] == "all"].iloc[0]
    assert all_row["n"] == 4 and all_row["n_safe"] + all_row["no_safe"] == 4
    assert set(ds.rows["image_id"]) == set(ds.per_face["image_id"])
    paths = ds.write(tmp_path)
    assert all(p.is_file() for p in paths)
    assert pd.read_csv(tmp_path / "safety_per_image.csv")["image_id"].tolist() == ds.per_face["image_id"].tolist()


def test_without_a_gallery_a_real_photo_is_judged_by_the_threshold_alone(embedder):
    """A real face in a gallery of generated faces is always nearest its own original (rank-1 trivially
    true: every strength "unsafe", even pixel blocks of 16). Without a gallery of faces like it, the verdict
    is the embedder's published threshold and rank-1 is not measured."""
    from skimage import data as skdata

    from deblur.faces import face_crop

    crop = face_crop(skdata.astronaut()).image
    from deblur.restore import restorers_for

    none = {"pixelate": {"none": restorers_for("pixelate")["none"]}}
    res = safety.sweep_face(crop, embedder=embedder, degradations=["pixelate"], strengths={"pixelate": (1, 16)},
                            restorers=none, require_face=False)
    assert not res.settings["rank1_measured"] and "threshold alone" in res.settings["gallery"]
    assert res.threshold.distance == 0.6 and "published" in res.threshold.source
    assert not res.table["rank1"].any()
    by_strength = res.table.set_index("strength")["reidentified"]
    assert by_strength[1.0] and not by_strength[16.0]  # untouched: re-identified; blocks of 16: not
    assert res.recommendations["pixelate"].strength == 16


def test_dataset_without_a_gallery_uses_its_own_faces(small_faces, embedder):
    faces = [(small_faces.ids[k], small_faces.image(k), {}) for k in range(3)]
    ds = safety.sweep_dataset(faces, embedder=embedder, degradations=["pixelate"], strengths={"pixelate": (4,)},
                              n_boot=10, crop="whole")
    assert ds.settings["gallery_size"] == 3
    assert "published" in ds.settings["threshold_source"]  # 3 impostor pairs: too few to calibrate FMR 1%


def test_dataset_identity_column_puts_the_persons_other_photo_in_the_gallery(small_faces, embedder, tmp_path):
    """With an identity column each face is attacked through the person's *other* photo: it leaves the gallery
    and the candidates as a stranger and comes back as the reference (second_view 'other_photo')."""
    from audit.safety.__main__ import main as safety_main
    from audit.safety.dataset import SweepFaces

    rng = np.random.default_rng(5)
    faces = []
    for k in range(6):  # six people, two photos each: the face and a re-captured photo of it
        clean = small_faces.image(k)
        twin = degrade.quantize(degrade.recapture(clean, rng))
        faces += [(f"p{k}-a", clean, {"person": f"p{k}", "g": "ab"[k % 2]}),
                  (f"p{k}-b", twin, {"person": f"p{k}", "g": "ab"[k % 2]})]
    ds = safety.sweep_dataset(faces, embedder=embedder, degradations=["pixelate"], strengths={"pixelate": (8,)},
                              n_boot=10, crop="whole", identity="person")
    assert set(ds.rows["second_view"]) == {"other_photo"}
    assert ds.settings["identity"] == "person" and "person" not in ds.group_columns and "g" in ds.group_columns
    assert ds.rows["image_id"].nunique() == 12 and (ds.rows["status"] == "ok").all()
    # what one face's attackers hold: its twin only as the reference, never as a stranger
    ids = [f[0] for f in faces]
    task = SweepFaces("dlib", safety.gallery_from_faces(_FaceList(faces), embedder), {"pixelate": (8,)}, 0.0,
                      False, 0, None, safety.GalleryFaces.of(ids, [f[1] for f in faces]),
                      {f[0]: f[2]["person"] for f in faces})
    gallery, refs = task.for_face("p3-a")
    assert "p3-b" not in gallery.ids and "p3-a" in gallery.ids and len(gallery.ids) == 11
    assert len(refs) == 1 and np.array_equal(refs[0], degrade.to_uint8(faces[7][1]))  # the photo, not a blank
    with pytest.raises(ValueError, match="identity column 'nobody'"):
        safety.sweep_dataset(faces, embedder=embedder, degradations=["pixelate"], strengths={"pixelate": (8,)},
                             crop="whole", identity="nobody")
    assert safety_main(["--data", "builtin", "--identity", "person", "--out", str(tmp_path)]) == 2


class _FaceList:
    """The minimal FaceSet interface gallery_from_faces reads, over (id, image, labels) triples."""

    def __init__(self, faces):
        self.ids = [f[0] for f in faces]
        self._images = [f[1] for f in faces]

    def __len__(self):
        return len(self.ids)

    def image(self, i):
        return self._images[i]


# ---------------------------------------------------------------------------------------------------------------
# The app endpoint, served for real


@pytest.fixture
def safety_server(app_server):
    """The shared app server (an upload is judged by the threshold alone: no gallery is involved)."""
    pytest.importorskip("gradio_client")
    return app_server[0]


def test_app_safety_endpoint(safety_server):
    from gradio_client import Client, handle_file

    client = Client(safety_server, verbose=False)
    out = client.predict(handle_file(str(FACE)), 0.0, api_name="/safety")
    *plots, table, gallery_out, files, reading = out
    assert len(plots) == len(safety.KINDS) - 1  # one figure per kind with a strength axis
    rows = table["data"]
    kinds = [r[0] for r in rows]
    assert kinds == list(safety.KINDS)
    fill_row = rows[kinds.index("fill")]
    assert fill_row[1] == 1  # solid fill is always recommended
    paths = [f if isinstance(f, str) else f["path"] if isinstance(f, dict) else f for f in files]
    assert paths and all(str(p).endswith(".png") for p in paths)
    for p in paths:
        assert set(png_chunks(Path(p).read_bytes())) <= {"IHDR", "IDAT", "IEND"}
    assert "lower bound" in reading.lower()
    with pytest.raises(Exception, match="Upload"):
        client.predict(None, 0.0, api_name="/safety")


def test_app_anonymise_endpoint_obscures_verifies_and_explains(safety_server, tmp_path):
    """The tab's Anonymise button through a launched server: one real photo, a face box typed by hand, bad input."""
    from gradio_client import Client, handle_file
    from PIL import Image

    client = Client(safety_server, verbose=False)
    astronaut = Path(__file__).resolve().parents[2] / "examples" / "astronaut.png"
    image, files, table, summary = client.predict(handle_file(str(astronaut)), "Pixelation + noise (recommended)",
                                                  "", api_name="/anonymise")
    rows = pd.DataFrame(table["data"], columns=table["headers"])
    assert len(rows) == 1 and rows.loc[0, "found by"] == "detector"
    assert rows.loc[0, "verdict"] in {"safe", "filled"}
    assert "parrot" in summary and "**0 re-identified**" in summary and "Missed faces" in summary
    # dlib's HOG also "finds a face" in the mission patch on the astronaut's arm (never obscured): shown for a look
    assert "**Look at 126,335,215,425**" in summary
    out = Path(image)
    assert set(png_chunks(out.read_bytes())) <= {"IHDR", "IDAT", "IEND"}  # no metadata
    before = np.asarray(Image.open(astronaut).convert("RGB"), float)
    after = np.asarray(Image.open(out).convert("RGB"), float)
    assert after.shape == before.shape
    x0, y0, x1, y1 = (int(float(v)) for v in rows.loc[0, "box (x0, y0, x1, y1)"].split(","))
    face_change = np.abs(after - before)[y0:y1, x0:x1].mean()
    assert face_change > 10 * np.abs(after - before)[:, :x0 // 2].mean() + 1  # the face changed, the rest did not
    # a box drawn by hand where the detector finds nothing (a flat photo): obscured and reported as manual
    flat = tmp_path / "flat.png"
    Image.fromarray(np.full((200, 200, 3), 128, np.uint8)).save(flat)
    _, _, table, _ = client.predict(handle_file(str(flat)), "Solid fill (black)", "40,40,140,160",
                                    api_name="/anonymise")
    assert [r[1] for r in table["data"]] == ["manual"]
    with pytest.raises(Exception, match="No face found"):
        client.predict(handle_file(str(flat)), "Pixelation", "", api_name="/anonymise")
    with pytest.raises(Exception, match="four numbers"):
        client.predict(handle_file(str(astronaut)), "Pixelation", "10,10,abc", api_name="/anonymise")
