"""Loaders on small fixtures written in the real formats of CelebA, FairFace, UTKFace and a folder + CSV."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from audit.data import files, loaders
from audit.data.fairface import age_name
from audit.data.labelled import LabelledFaces, iter_images
from audit.data.loaders import (
    load_celeba,
    load_dataset,
    load_fairface,
    load_folder,
    load_utkface,
)
from deblur.io import ImageError
from tests.fixtures_data import (
    UTK_GOOD,
    UTK_MALFORMED,
    write_celeba,
    write_face,
    write_fairface_csv,
    write_folder,
    write_utkface,
)


def _inside(faces: LabelledFaces) -> None:
    """Every kept row has an absolute, resolved path inside the root that exists."""
    for path in faces.frame["path"]:
        p = Path(path)
        assert p.is_absolute() and p == p.resolve() and p.is_relative_to(faces.root) and p.is_file()


# ---- CelebA ------------------------------------------------------------------------------------------------------

def test_celeba_filters_groups_and_partition(tmp_path):
    write_celeba(tmp_path, n=8, eyeglasses=(1,), blurry=(2,), male=(0, 3, 5), missing=(7,))
    faces = load_celeba(tmp_path)
    _inside(faces)
    assert faces.source == "celeba" and faces.label_source == "label"
    assert faces.group_columns == ["gender", "age", "pale_skin"]
    assert list(faces.frame["id"]) == ["000001.jpg", "000004.jpg", "000005.jpg", "000006.jpg", "000007.jpg"]
    reasons = dict(zip(faces.skipped["id"], faces.skipped["reason"], strict=True))
    assert reasons == {"000002.jpg": "filtered: Eyeglasses", "000003.jpg": "filtered: Blurry",
                       "000008.jpg": files.MISSING}
    gender = dict(zip(faces.frame["id"], faces.frame["gender"], strict=True))
    assert gender["000001.jpg"] == "male" and gender["000005.jpg"] == "female"
    assert set(faces.frame["age"]) == {"young", "not young"}
    assert set(faces.frame["pale_skin"]) == {"not pale skin"}
    assert list(faces.frame["split"]) == ["train"] * 4 + ["val"]
    assert any("non-commercial" in n for n in faces.notes)


def test_celeba_bad_lines_split_and_unknown_attribute(tmp_path):
    write_celeba(tmp_path, n=6, bad_lines=True)
    faces = load_celeba(tmp_path)
    assert faces.skip_counts().keys() >= {"filtered: Eyeglasses", "filtered: Blurry"}
    assert sum(r.startswith(files.BAD_LABEL) for r in faces.skipped["reason"]) == 2
    assert list(load_celeba(tmp_path, split="test").frame["id"]) == ["000006.jpg"]
    with pytest.raises(ValueError, match="not in"):
        load_celeba(tmp_path, groups=("Gender",))
    with pytest.raises(ValueError, match="unknown split"):
        load_celeba(tmp_path, split="validation")


def test_celeba_detect_uses_the_face_filter(tmp_path):
    write_celeba(tmp_path, n=4, eyeglasses=(), blurry=())
    (tmp_path / "img_align_celeba" / "000002.jpg").write_bytes(b"not a jpeg")
    seen = []

    def only_first(img: np.ndarray) -> bool:
        seen.append(img.shape)
        return len(seen) == 1

    faces = load_celeba(tmp_path, detect=True, has_face=only_first)
    assert list(faces.frame["id"]) == ["000001.jpg"]
    assert faces.skip_counts() == {"filtered: no face (Haar)": 2, "not an image": 1}


def test_celeba_detect_default_is_haar(tmp_path):
    from deblur.faces import haar_has_face

    write_celeba(tmp_path, n=2, eyeglasses=(), blurry=(), size=128)
    faces = load_celeba(tmp_path, detect=True)
    expected = [f"{i + 1:06d}.jpg" for i in range(2)
                if haar_has_face(loaders.load_image(tmp_path / "img_align_celeba" / f"{i + 1:06d}.jpg"))]
    assert list(faces.frame["id"]) == expected


def test_celeba_missing_files_are_explained(tmp_path):
    with pytest.raises(FileNotFoundError, match="img_align_celeba"):
        load_celeba(tmp_path)
    (tmp_path / "img_align_celeba").mkdir()
    with pytest.raises(FileNotFoundError, match="list_attr_celeba.txt"):
        load_celeba(tmp_path)


# ---- FairFace CSV -------------------------------------------------------------------------------------------------

def test_fairface_csv(tmp_path):
    write_fairface_csv(tmp_path, extra_rows=[("../escape.jpg", "20-29", "Male", "White", "False"),
                                             ("val/9.jpg", "twenty", "Male", "White", "False")])
    faces = load_fairface(tmp_path)
    _inside(faces)
    assert faces.group_columns == ["race", "gender", "age"]
    assert len(faces) == 5
    assert faces.frame.set_index("id").loc["val/5.jpg", "age"] == "more than 70"
    assert faces.skip_counts() == {files.MISSING: 1, files.OUTSIDE: 1, f"{files.BAD_LABEL} (age 'twenty')": 1}
    assert any("CC BY 4.0" in n for n in faces.notes) and any("annotator" in n for n in faces.notes)


def test_fairface_csv_missing_columns(tmp_path):
    (tmp_path / "fairface_label_val.csv").write_text("file,age\nval/1.jpg,3-9\n")
    with pytest.raises(ValueError, match="lacks FairFace columns"):
        load_fairface(tmp_path)


# ---- UTKFace ------------------------------------------------------------------------------------------------------

def test_utkface_names(tmp_path):
    folder = write_utkface(tmp_path)
    faces = load_utkface(folder)
    _inside(faces)
    assert sorted(faces.frame["id"]) == sorted(UTK_GOOD)
    assert sorted(faces.skipped["id"]) == sorted(UTK_MALFORMED)
    assert all(r.startswith(files.BAD_LABEL) for r in faces.skipped["reason"])
    row = faces.frame.set_index("id").loc["61_1_1_20170109142408075.jpg.chip.jpg"]
    assert (row["gender"], row["race"], row["age"], row["age_years"]) == ("female", "Black", "60-69", 61)
    assert faces.frame.set_index("id").loc["1_0_2_20161219140623097.jpg.chip.jpg", "age"] == "0-2"
    assert faces.frame.set_index("id").loc["80_0_4_20170117171416733.jpg", "race"] == "Others"


def test_utkface_ages_get_fairface_age_names():
    assert [age_name(a) for a in (0, 2, 3, 9, 10, 19, 69, 70, 116)] == \
        ["0-2", "0-2", "3-9", "3-9", "10-19", "10-19", "60-69", "more than 70", "more than 70"]


# ---- Folder + CSV -------------------------------------------------------------------------------------------------

def test_folder_csv_traps(tmp_path):
    root, outside = tmp_path / "data", tmp_path / "outside"
    csv = write_folder(root, outside)
    faces = load_folder(root, csv)
    _inside(faces)
    assert faces.group_columns == ["gender", "age"]
    assert list(faces.frame["id"]) == ["a.png", "sub/b.jpg", "c.JPG", "fake.jpg"]
    assert list(faces.frame["age"]) == ["20-29", "unknown", "30-39", "40-49"]
    assert list(faces.frame["gender"]) == ["female", "male", "unknown", "female"]
    assert faces.skip_counts() == {files.OUTSIDE: 3, files.DUPLICATE: 2, files.NOT_IMAGE_EXT: 1,
                                   files.MISSING: 1}
    assert not any("secret" in p for p in faces.frame["path"])


def test_non_image_file_is_a_counted_skip_downstream(tmp_path):
    root = tmp_path / "data"
    faces = load_folder(root, write_folder(root, tmp_path / "outside"))
    results = {row["id"]: image for row, image in iter_images(faces)}
    assert isinstance(results["fake.jpg"], ImageError)
    good = [img for img in results.values() if not isinstance(img, ImageError)]
    assert len(good) == 3
    assert all(img.dtype == np.float32 and img.ndim == 3 and img.shape[2] == 3 for img in good)


def test_folder_without_csv_lists_all_images(tmp_path):
    write_face(tmp_path / "x.png", 0)
    write_face(tmp_path / "deep" / "y.jpeg", 1)
    (tmp_path / "readme.txt").write_text("hi")
    faces = load_folder(tmp_path)
    assert faces.group_columns == [] and sorted(faces.frame["id"]) == ["deep/y.jpeg", "x.png"]
    _inside(faces)


def test_folder_csv_without_path_column(tmp_path):
    (tmp_path / "labels.csv").write_text("file,gender\na.png,female\n")
    with pytest.raises(ValueError, match=r"columns \['file', 'gender'\] but needs a 'path' column"):
        load_folder(tmp_path, "labels.csv")


def test_folder_csv_unreadable_or_missing(tmp_path):
    (tmp_path / "labels.csv").write_bytes(b"path,gender\n\xff\xfe\x00bad,\"unterminated\n")
    with pytest.raises(ValueError, match="could not read labels CSV"):
        load_folder(tmp_path, tmp_path / "labels.csv")
    with pytest.raises(FileNotFoundError, match="labels CSV not found"):
        load_folder(tmp_path, tmp_path / "nope.csv")
    with pytest.raises(FileNotFoundError, match="data folder not found"):
        load_folder(tmp_path / "nope")


def test_folder_csv_named_group_columns_and_ids(tmp_path):
    write_face(tmp_path / "a.png", 0)
    (tmp_path / "labels.csv").write_text("id,path,gender,note\nface-1,a.png,female,x\n")
    faces = load_folder(tmp_path, "labels.csv", group_columns=["gender"])
    assert faces.group_columns == ["gender"] and list(faces.frame["id"]) == ["face-1"] and "note" in faces.frame
    with pytest.raises(ValueError, match="not in"):
        load_folder(tmp_path, "labels.csv", group_columns=["race"])
    (tmp_path / "dupes.csv").write_text("id,path\nx,a.png\nx,a.png\n")
    with pytest.raises(ValueError, match="repeats ids"):
        load_folder(tmp_path, "dupes.csv")


# ---- Dispatch and iteration ---------------------------------------------------------------------------------------

def test_load_dataset_detects_formats(tmp_path):
    write_celeba(tmp_path / "celeba", n=3)
    write_fairface_csv(tmp_path / "ff")
    utk = write_utkface(tmp_path / "utk")
    write_face(tmp_path / "plain" / "a.png", 0)
    assert load_dataset(tmp_path / "celeba").source == "celeba"
    assert load_dataset(tmp_path / "ff").source == "fairface"
    assert load_dataset(utk).source == "utkface"
    assert load_dataset(tmp_path / "plain").source == "folder"
    assert load_dataset("celeba", tmp_path / "celeba").source == "celeba"
    assert load_dataset(tmp_path / "ff", labels=tmp_path / "ff" / "fairface_label_val.csv").source == "fairface"
    assert load_dataset(tmp_path / "plain", fmt="utkface").source == "utkface"


def test_load_dataset_unknown_format_lists_known(tmp_path):
    with pytest.raises(ValueError, match="folder, celeba, fairface, utkface"):
        load_dataset(tmp_path, fmt="imagenet")
    with pytest.raises(ValueError, match="needs root"):
        load_dataset("celeba")


def test_iter_images_in_memory_and_missing(tmp_path):
    from tests.fixtures_data import face_bytes

    frame = pd.DataFrame({"id": ["mem", "arr", "gone", "none"],
                          "path": [None, None, str(tmp_path / "gone.png"), None]})
    faces = LabelledFaces(frame, [], images={"mem": face_bytes(0), "arr": np.zeros((8, 8, 3), np.uint8)})
    out = {row["id"]: image for row, image in iter_images(faces)}
    assert out["mem"].shape == (64, 64, 3) and out["arr"].shape == (8, 8, 3)
    assert isinstance(out["gone"], ImageError) and "not found" in str(out["gone"])
    assert isinstance(out["none"], ImageError)


def test_group_counts(tmp_path):
    write_fairface_csv(tmp_path)
    counts = load_fairface(tmp_path, groups=("gender",)).group_counts()
    assert dict(zip(counts["gender"], counts["n"], strict=True)) == {"Female": 2, "Male": 3}


# ---- The one reader of --data (audit engine and safety CLI) ---------------------------------------------------------


def test_face_source_and_face_items_read_a_folder_the_same_way(tmp_path):
    from audit.data import face_items, face_source

    root = tmp_path / "data"
    labels = write_folder(root, tmp_path / "outside")
    meta, items, total = face_source(str(root), labels=str(labels), n=10)
    items = list(items)
    assert total == len(items) == 4 and meta["group_columns"] == ["gender", "age"]
    assert {s["reason"] for s in meta["skipped"]} >= {files.OUTSIDE, files.DUPLICATE, files.MISSING}
    unreadable = [i for i in items if i[3] is not None]
    assert [i[0] for i in unreadable] == ["fake.jpg"] and unreadable[0][1] is None
    kept = face_items(str(root), labels=str(labels), n=10)  # what python -m audit.safety --data sweeps
    assert [k[0] for k in kept] == [i[0] for i in items if i[3] is None]
    assert all(img.shape[2] == 3 for _, img, _ in kept) and kept[0][2] == {"gender": "female", "age": "20-29"}
    assert [k[0] for k in face_items(str(root), labels=str(labels), n=2)] == [i[0] for i in items[:2]]
