"""Writers of small data sets in the exact on-disk formats of CelebA, FairFace (CSV and Hub parquet), UTKFace
and a folder + CSV, filled with generated faces so loader tests run offline in seconds."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from deblur.data import generate_faces

# The 40 attributes of list_attr_celeba.txt, in the file's order.
CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair Blond_Hair "
    "Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair Heavy_Makeup High_Cheekbones "
    "Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose Receding_Hairline "
    "Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick "
    "Wearing_Necklace Wearing_Necktie Young"
).split()


def face_bytes(index: int, fmt: str = "JPEG", size: int = 64, seed: int = 0) -> bytes:
    """One generated face encoded as JPEG or PNG bytes."""
    face = generate_faces(1, seed, size=size, start=index)[0]
    buf = io.BytesIO()
    Image.fromarray(face).save(buf, format=fmt)
    return buf.getvalue()


def write_face(path: Path, index: int, size: int = 64) -> Path:
    """Write generated face ``index`` to ``path`` (format from the suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = "PNG" if path.suffix.lower() == ".png" else "JPEG"
    path.write_bytes(face_bytes(index, fmt, size))
    return path


def write_celeba(root: Path, n: int = 8, eyeglasses: Sequence[int] = (1,), blurry: Sequence[int] = (2,),
                 male: Sequence[int] = (0, 3, 5), missing: Sequence[int] = (), partition: bool = True,
                 bad_lines: bool = False, size: int = 64) -> Path:
    """CelebA layout: ``img_align_celeba/000001.jpg``, ``list_attr_celeba.txt``, ``list_eval_partition.txt``.

    Rows listed in ``eyeglasses``/``blurry`` get +1 for that attribute (the loader must filter them out);
    ``missing`` rows are listed but have no image file.
    """
    images = root / "img_align_celeba"
    lines = [str(n), " ".join(CELEBA_ATTRIBUTES) + " "]  # the real header line ends with a space
    for i in range(n):
        name = f"{i + 1:06d}.jpg"
        if i not in missing:
            write_face(images / name, i, size)
        values = {a: -1 for a in CELEBA_ATTRIBUTES}
        values["Eyeglasses"] = 1 if i in eyeglasses else -1
        values["Blurry"] = 1 if i in blurry else -1
        values["Male"] = 1 if i in male else -1
        values["Young"] = 1 if i % 2 == 0 else -1
        # Real rows: the file name, then each value right-aligned in two columns ("-1" / " 1"), space-separated.
        lines.append(name + " " + " ".join(f"{values[a]:2d}" for a in CELEBA_ATTRIBUTES))
    if bad_lines:
        lines.append(f"{n + 1:06d}.jpg  1 -1")  # too few values
        lines.append(f"{n + 2:06d}.jpg " + " ".join(["0"] * len(CELEBA_ATTRIBUTES)))  # not ±1
    (root / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    if partition:
        split = ["0"] * (n - 2) + ["1", "2"]
        (root / "list_eval_partition.txt").write_text("".join(f"{i + 1:06d}.jpg {split[i]}\n" for i in range(n)))
    return root


FAIRFACE_CSV_ROWS = [
    ("val/1.jpg", "3-9", "Male", "East Asian", "False"),
    ("val/2.jpg", "50-59", "Female", "East Asian", "True"),
    ("val/3.jpg", "30-39", "Male", "White", "True"),
    ("val/4.jpg", "20-29", "Female", "Latino_Hispanic", "True"),
    ("val/5.jpg", "more than 70", "Male", "Southeast Asian", "False"),
    ("val/6.jpg", "20-29", "Female", "Black", "False"),
]


def write_fairface_csv(root: Path, missing: Sequence[str] = ("val/6.jpg",), extra_rows: Sequence[tuple] = ()) -> Path:
    """FairFace as released: ``val/N.jpg`` and ``fairface_label_val.csv`` (``file,age,gender,race,service_test``)."""
    rows = [*FAIRFACE_CSV_ROWS, *extra_rows]
    for i, (file, *_rest) in enumerate(rows):
        if file not in missing and not file.startswith(".."):
            write_face(root / file, 100 + i)
    text = "file,age,gender,race,service_test\n" + "".join(",".join(r) + "\n" for r in rows)
    (root / "fairface_label_val.csv").write_text(text)
    return root / "fairface_label_val.csv"


UTK_GOOD = ["25_0_0_20170116174525125.jpg.chip.jpg", "61_1_1_20170109142408075.jpg.chip.jpg",
            "1_0_2_20161219140623097.jpg.chip.jpg", "45_1_3_20170119183532321.jpg", "80_0_4_20170117171416733.jpg"]
UTK_MALFORMED = ["39_1_20170116174525125.jpg.chip.jpg",  # race missing, as in a few real UTKFace files
                 "x_0_0_20170116174525125.jpg.chip.jpg", "130_0_0_20170116174525125.jpg.chip.jpg",
                 "30_0_7_20170116174525125.jpg.chip.jpg", "30_2_0_20170116174525125.jpg.chip.jpg"]


def write_utkface(root: Path) -> Path:
    """UTKFace: labels in the file names, good and malformed ones, in a ``UTKFace/`` folder."""
    folder = root / "UTKFace"
    for i, name in enumerate(UTK_GOOD + UTK_MALFORMED):
        write_face(folder / name, 200 + i)
    return folder


def write_folder(root: Path, outside: Path) -> Path:
    """A folder + ``labels.csv`` with every trap: outside paths, a link out, duplicates, empty cells, fakes."""
    root.mkdir(parents=True, exist_ok=True)
    write_face(root / "a.png", 300)
    write_face(root / "sub" / "b.jpg", 301)
    write_face(root / "c.JPG", 302)
    write_face(outside / "secret.png", 303)
    (root / "fake.jpg").write_text("this is text, not a JPEG")
    (root / "notes.txt").write_text("not an image")
    os.symlink(outside / "secret.png", root / "link.png")
    rows = [
        "path,gender,age",
        "a.png,female,20-29",
        "sub/b.jpg,male,",  # empty cell -> unknown
        "c.JPG,,30-39",
        "a.png,female,20-29",  # duplicate
        "./sub/../a.png,female,20-29",  # same file spelled differently: duplicate too
        "../outside/secret.png,male,20-29",
        f"{outside / 'secret.png'},male,20-29",  # absolute path elsewhere
        "link.png,male,20-29",  # symlink out of the folder
        "notes.txt,male,20-29",
        "missing.png,male,20-29",
        "fake.jpg,female,40-49",  # passes the loader, fails when decoded
    ]
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root / "labels.csv"


def fairface_features() -> dict:
    """The ``huggingface`` schema metadata the Hub's parquet files carry (class-label names)."""
    from audit.data.fairface import AGE_NAMES, GENDER_NAMES, RACE_NAMES

    return {"info": {"features": {
        "image": {"_type": "Image"},
        "age": {"names": list(AGE_NAMES), "_type": "ClassLabel"},
        "gender": {"names": list(GENDER_NAMES), "_type": "ClassLabel"},
        "race": {"names": list(RACE_NAMES), "_type": "ClassLabel"},
        "service_test": {"dtype": "bool", "_type": "Value"},
    }}}


def write_fairface_parquet(path: Path, per_race: Sequence[int] = (4, 4, 4, 4, 4, 4, 1), corrupt: Sequence[int] = (),
                           seed: int = 0) -> int:
    """A small FairFace validation parquet with the Hub's schema.

    ``image`` is ``struct<bytes: binary, path: string>`` (JPEG bytes), ``age``/``gender``/``race`` are int64
    class labels, ``service_test`` bool. ``per_race[k]`` faces get race code ``k``; row numbers in ``corrupt``
    get truncated JPEG bytes. Returns the number of rows.
    """
    rng = np.random.default_rng(seed)
    races = [k for k, count in enumerate(per_race) for _ in range(count)]
    images = []
    for i in range(len(races)):
        data = face_bytes(400 + i, "JPEG", 64)
        images.append({"bytes": data[: len(data) // 8] if i in corrupt else data, "path": None})
    schema = pa.schema([
        ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
        ("age", pa.int64()), ("gender", pa.int64()), ("race", pa.int64()), ("service_test", pa.bool_()),
    ], metadata={"huggingface": json.dumps(fairface_features())})
    table = pa.table({
        "image": images,
        "age": rng.integers(0, 9, len(races)).tolist(),
        "gender": rng.integers(0, 2, len(races)).tolist(),
        "race": races,
        "service_test": (rng.random(len(races)) < 0.5).tolist(),
    }, schema=schema)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return table.num_rows
