"""The audit at scale: every engine gives the same rows, a real Ray cluster is joined, --resume and --rebuild-report.

The Ray test starts a real local cluster with ``ray start --head`` (2 CPUs) and runs ``python -m audit --engine ray
--address ...`` against it in a subprocess, as a user would.
"""

from __future__ import annotations

import csv
import os
import secrets
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import free_port

from audit.__main__ import main
from audit.engine import AuditConfig, SequentialEngine, run_audit
from audit.parallel import LocalPool, RayEngine, make_engine

ROOT = Path(__file__).resolve().parents[2]
# Token authentication on the cluster and in the driver (the token is ~/.ray/auth_token, shared on this machine).
# Ray 2.60 clusters use token authentication: the head and every client need the same token (a fresh machine
# has no ~/.ray/auth_token, so the test makes one for its cluster and hands it to both through the environment).
RAY_ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN": secrets.token_hex(32)}
TIMING = ["seconds"]  # the only column allowed to differ between engines; all others must match bit for bit
ARGS = ["--models", "resunet-gaussian", "wiener", "none", "--degradations", "gaussian", "pixelate",
        "--strengths", "gaussian=4", "pixelate=8", "--boot", "40", "--min-group-n", "2", "--no-contact-sheets",
        "--predict", "pred_skin_tone_bin", "--batch-size", "2"]


@pytest.fixture(scope="module")
def faces_dir(tmp_path_factory, small_faces) -> tuple[Path, Path]:
    """Five generated faces, a real photograph's face and a faceless grey image, with a label column."""
    from matplotlib import cbook

    from deblur.io import load_image, save_png

    root = tmp_path_factory.mktemp("scale") / "data"
    root.mkdir()
    for i in range(5):
        save_png(small_faces.image(i), root / f"face{i}.png")
    hopper = load_image(Path(cbook.__file__).parent / "mpl-data" / "sample_data" / "grace_hopper.jpg")
    save_png(hopper, root / "hopper.png")  # not square: the face is detected and cropped
    save_png(np.full((128, 128, 3), 0.5, np.float32), root / "grey.png")
    labels = root / "labels.csv"
    with labels.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "group"])
        w.writerows([[f"face{i}.png", "a" if i < 3 else "b"] for i in range(5)])
        w.writerows([["hopper.png", "b"], ["grey.png", "a"]])
    return root, labels


def _config(data: tuple[Path, Path], out: Path, **kw) -> AuditConfig:
    root, labels = data
    kw = {"predict": ["pred_skin_tone_bin"], **kw}
    return AuditConfig(data=str(root), labels=str(labels), models=["resunet-gaussian", "wiener", "none"],
                       degradations={"gaussian": (4.0,), "pixelate": (8.0,)}, n_boot=40, min_group_n=2,
                       contact_sheets=False, out=str(out), **kw)


def _rows(out: Path) -> pd.DataFrame:
    df = pd.read_csv(out / "per_image.csv", dtype={"image_id": str}).drop(columns=TIMING)
    return df.sort_values(["image_id", "model", "degradation", "strength"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def sequential(faces_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("seq") / "out"
    run_audit(_config(faces_dir, out), engine=SequentialEngine(), batch_size=2)
    return out


@pytest.fixture(scope="module")
def ray_cluster():
    """A real Ray cluster on this machine: ``ray start --head --port=FREE --num-cpus=2``; ``ray stop`` after."""
    port = free_port()
    ray = [sys.executable, "-m", "ray.scripts.scripts"]
    subprocess.run([*ray, "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
                    "--disable-usage-stats"], check=True, env=RAY_ENV, timeout=180, capture_output=True)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([*ray, "stop"], env=RAY_ENV, timeout=120, capture_output=True)


def test_local_pool_gives_the_sequential_rows(faces_dir, sequential, tmp_path):
    """Same per_image rows (all but timing) and the same groups.csv with 2 worker processes."""
    out = tmp_path / "pool"
    with LocalPool(2) as pool:
        result = run_audit(_config(faces_dir, out), engine=pool, batch_size=2)
    assert result.engine == "local"
    expected = _rows(sequential)
    assert expected["image_id"].nunique() == 7 and expected.groupby("image_id").size().nunique() == 1
    assert set(expected["status"]) >= {"ok", "no_face_clean"}
    assert "hopper.png" in set(expected.loc[expected["status"] == "ok", "image_id"])  # the real photo is audited
    pd.testing.assert_frame_equal(_rows(out), expected, check_exact=True)
    pd.testing.assert_frame_equal(pd.read_csv(out / "groups.csv"), pd.read_csv(sequential / "groups.csv"),
                                  check_exact=True)


def test_ray_cluster_joined_by_address_gives_the_same_rows(faces_dir, sequential, ray_cluster, tmp_path):
    root, labels = faces_dir
    out = tmp_path / "ray"
    done = subprocess.run([sys.executable, "-m", "audit", "--data", str(root), "--labels", str(labels), *ARGS,
                           "--engine", "ray", "--address", ray_cluster, "--workers", "1", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=RAY_ENV)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "with the ray engine" in done.stdout
    pd.testing.assert_frame_equal(_rows(out), _rows(sequential), check_exact=True)
    pd.testing.assert_frame_equal(pd.read_csv(out / "groups.csv"), pd.read_csv(sequential / "groups.csv"),
                                  check_exact=True)


class Recording(SequentialEngine):
    """The sequential engine, remembering which faces it was asked to audit."""

    def __init__(self):
        super().__init__()
        self.audited: list[str] = []

    def audit(self, step, cleans):
        self.audited += [c.image_id for c in cleans]
        yield from super().audit(step, cleans)


def test_resume_audits_only_the_incomplete_images(faces_dir, sequential, tmp_path):
    out = tmp_path / "partial"
    out.mkdir()
    full = pd.read_csv(sequential / "per_image.csv", dtype={"image_id": str}, keep_default_na=False)
    done = ["face0.png", "face3.png", "grey.png"]  # face4.png is cut half-way
    # An interrupted run: three complete images, then half of the next one's rows.
    partial = pd.concat([full[full.image_id.isin(done)], full[full.image_id == "face4.png"].head(2)])
    partial.to_csv(out / "per_image.csv", index=False)

    assert main(["--rebuild-report", str(out)]) == 2  # unfinished: a message, not a traceback

    engine = Recording()
    result = run_audit(_config(faces_dir, out), engine=engine, resume=True, batch_size=2)
    assert result.n_resumed == 3
    assert sorted(engine.audited) == sorted(set(full.image_id) - set(done))  # face4.png is redone
    pd.testing.assert_frame_equal(_rows(out), _rows(sequential), check_exact=True)
    pd.testing.assert_frame_equal(pd.read_csv(out / "groups.csv"), pd.read_csv(sequential / "groups.csv"),
                                  check_exact=True)
    kept = pd.read_csv(out / "per_image.csv", dtype=str, keep_default_na=False)
    old = full[full.image_id.isin(done)].set_index(["image_id", "model", "degradation"])["seconds"]
    now = kept[kept.image_id.isin(done)].set_index(["image_id", "model", "degradation"])["seconds"]
    assert (now.sort_index().astype(str) == old.sort_index().astype(str)).all()  # kept, not recomputed


def test_resume_refuses_rows_of_another_audit(faces_dir, sequential, tmp_path):
    out = tmp_path / "other"
    out.mkdir()
    (out / "per_image.csv").write_bytes((sequential / "per_image.csv").read_bytes())
    with pytest.raises(ValueError, match="different audit"):
        run_audit(_config(faces_dir, out, predict=[]), resume=True, batch_size=2)  # other columns
    with pytest.raises(FileNotFoundError, match="run without --resume"):
        run_audit(_config(faces_dir, tmp_path / "none"), resume=True)


def test_rebuild_report_messages(tmp_path, capsys):
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "per_image.csv").write_text("image_id,model\n")
    assert main(["--rebuild-report", str(partial)]) == 2
    err = capsys.readouterr().err
    assert "did not finish" in err and "--resume" in err and "Traceback" not in err
    assert main(["--rebuild-report", str(tmp_path / "nothing")]) == 2
    assert "not an audit folder" in capsys.readouterr().err


def test_engine_arguments_give_clear_errors(capsys):
    with pytest.raises(ValueError, match="--engine ray"):
        make_engine("local", 2, "127.0.0.1:6379")
    with pytest.raises(ValueError, match="choose one of"):
        make_engine("spark")
    for bad in (["--workers", "0"], ["--batch-size", "0"], ["--engine", "local", "--address", "x:1"]):
        with pytest.raises(SystemExit) as exit_:
            main(bad)
        assert exit_.value.code == 2
    assert isinstance(make_engine("local", 1), SequentialEngine)
    assert isinstance(make_engine("ray", 2), RayEngine)  # nothing started until it is used


def test_safety_dataset_mode_same_with_a_process_pool(small_faces):
    from audit import safety
    from audit.engine import Gallery
    from audit.stats import calibrate_threshold
    from deblur.embed import get_embedder

    embedder = get_embedder("dlib")
    ids = list(small_faces.ids[10:22])
    embs = [embedder.embed(small_faces.image(i)) for i in range(10, 22)]
    e = np.stack(embs)
    gallery = Gallery(ids, e, e.mean(axis=0), calibrate_threshold(e, 0.1, 0))
    faces = [(small_faces.ids[i], small_faces.image(i), {"g": "a" if i % 2 else "b"}) for i in range(3)]
    cands = safety.GalleryFaces.of(ids, [small_faces.image(i) for i in range(10, 22)])
    kw = {"embedder": embedder, "gallery": gallery, "degradations": ["pixelate"], "strengths": {"pixelate": (4, 12)},
          "n_boot": 20, "candidates": cands}
    seq = safety.sweep_dataset(faces, **kw)
    with LocalPool(2) as pool:
        par = safety.sweep_dataset(faces, engine=pool, **kw)
    timing = ["sweep_seconds"]
    pd.testing.assert_frame_equal(par.per_face.drop(columns=timing), seq.per_face.drop(columns=timing),
                                  check_exact=True)
    pd.testing.assert_frame_equal(par.groups, seq.groups, check_exact=True)
    parrot = seq.rows[seq.rows["attacker"] == "parrot"]
    assert len(parrot) and (parrot["status"] == "ok").all()  # a non-built-in gallery's photos are the candidates


def test_safety_cli_dataset_mode_runs_with_the_default_process_pool(tmp_path, capsys):
    """`python -m audit.safety --data builtin` with the default engine (a pool over every core) and no
    --external: it once refused to start ("external restorers run in this process") because the empty
    per-kind table of external restorers counted as some."""
    from audit.safety.__main__ import main as safety_main

    out = tmp_path / "safety"
    code = safety_main(["--data", "builtin", "--n", "2", "--degradations", "pixelate", "--strengths", "pixelate=8",
                        "--n-boot", "10", "--workers", "2", "--out", str(out)])
    assert code == 0, capsys.readouterr().err[-2000:]
    rows = pd.read_csv(out / "safety_rows.csv")
    assert set(rows["attacker"]) >= {"restore", "parrot"} and rows["image_id"].nunique() == 2
