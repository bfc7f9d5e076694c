"""External restorers: a Python callable from a module on disk and a real Gradio app on localhost, audited
through ``python -m audit --external``; every failure mode gives its own row status."""

from __future__ import annotations

import csv
import pickle
import textwrap
import time

import numpy as np
import pytest

from bench.server import free_port
from deblur.restore import (
    ExternalRestorer,
    RestoreFailure,
    close_restorers,
    external_restorers,
    parse_external,
    restore_outcomes,
)
from deblur.restore.external import to_output_image
from deblur.restore.external.call import Runner

MODULE = textwrap.dedent('''
    """Restorers a user might bring: some good, some broken."""
    import threading
    import time

    import cv2
    import numpy as np

    calls = []
    in_flight = [0, 0]  # now, max
    lock = threading.Lock()

    def upscale(img):
        """Returns 2x the size (as a super-resolution restorer does)."""
        calls.append((img.dtype, img.shape))
        return cv2.resize(img, (img.shape[1] * 2, img.shape[0] * 2), interpolation=cv2.INTER_CUBIC)

    def told(img, kind=None, strength=None):
        calls.append((kind, strength))
        return img

    def needs_more(img, model):
        return img

    def slow(img):
        time.sleep(5)
        return img

    def boom(img):
        raise RuntimeError("model weights not found")

    def flat(img):
        return img.reshape(-1)

    def text(img):
        return "a restored face"

    def nan(img):
        return np.full(img.shape, np.nan, np.float32)

    def counting(img):
        with lock:
            in_flight[0] += 1
            in_flight[1] = max(in_flight)
        time.sleep(0.05)
        with lock:
            in_flight[0] -= 1
        return img
''')

QUICK = ["--n", "2", "--degradations", "gaussian", "--strengths", "gaussian=3", "--boot", "20", "--predict", "none",
         "--no-contact-sheets", "--plotlyjs", "cdn"]


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A module ``user_restorers`` in a folder on sys.path, as a user's own package would be."""
    folder = tmp_path / "userpkg"
    folder.mkdir()
    (folder / "user_restorers.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(folder))
    import importlib

    import user_restorers

    return importlib.reload(user_restorers)


def _rows(out) -> list[dict]:
    with open(out / "per_image.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def face(seed: int = 0) -> np.ndarray:
    from skimage import data

    img = data.astronaut()[30:158, 170:298].astype(np.float32) / 255.0  # the astronaut's face, 128 px
    return np.roll(img, seed, axis=1)


# ---------------------------------------------------------------------------------------------------- spec


def test_parse_specs():
    spec = parse_external("mine=pkg.mod:fn")
    assert (spec.name, spec.source, spec.target, spec.nonblind) == ("mine", "python", "pkg.mod:fn", False)
    spec = parse_external("remote=http://127.0.0.1:7860/#/predict?nonblind,timeout=5,kinds=gaussian+motion")
    assert (spec.source, spec.target, spec.api_name) == ("gradio", "http://127.0.0.1:7860/", "/predict")
    assert spec.nonblind and spec.timeout == 5 and spec.kinds == ("gaussian", "motion")
    spec = parse_external("gfp=owner/GFPGAN#predict?rate=0.5,retries=4,out=0", concurrency=2)
    assert (spec.target, spec.api_name, spec.rate, spec.retries, spec.output, spec.concurrency) == (
        "owner/GFPGAN", "/predict", 0.5, 4, 0, 2)


@pytest.mark.parametrize("text, words", [
    ("justaname", "NAME=SPEC"),
    ("x=http://127.0.0.1:7860/", "#/predict"),
    ("x=pkg.mod", "cannot read"),
    ("x=pkg:fn?fast", "unknown option"),
    ("x=pkg:fn?kinds=blur", "unknown degradation"),
    ("x=pkg:fn?timeout=0", "timeout > 0"),
    ("bad name=pkg:fn", "letters, digits"),
    ("NaN=pkg:fn", "missing value"),
])
def test_parse_rejects_with_the_syntax(text, words):
    with pytest.raises(ValueError, match=words):
        parse_external(text)


# ------------------------------------------------------------------------------------------- output checks


def test_output_checks_give_reasons():
    img, note = to_output_image(np.zeros((256, 256, 3), np.uint8), (128, 128, 3))
    assert img.shape == (128, 128, 3) and img.dtype == np.float32 and "256x256 resized to 128x128" in note
    assert to_output_image(np.ones((128, 128, 3), np.float32), (128, 128, 3))[1] == ""
    for bad, reason in [(None, "not_image"), ("text", "not_image"), ({"a": 1}, "not_image"),
                        (np.zeros(10), "wrong_shape"), (np.zeros((3, 128, 128)), "wrong_shape"),
                        (np.full((8, 8, 3), np.nan), "bad_values"), (np.full((8, 8, 3), 300), "bad_values"),
                        (np.full((8, 8, 3), 2.0), "bad_values")]:
        with pytest.raises(RestoreFailure) as info:
            to_output_image(bad, (128, 128, 3))
        assert info.value.reason == reason, (bad, info.value)


# ---------------------------------------------------------------------------------------- Python callables


def test_python_callable_gets_uint8_and_kind_strength_only_when_nonblind(user_module):
    blind = external_restorers(["b=user_restorers:told"], ["gaussian"])["gaussian"]["b"]
    nonblind = external_restorers(["n=user_restorers:told?nonblind"], ["gaussian"])["gaussian"]["n"]
    assert blind.family == nonblind.family == "external" and not blind.uses_strength and nonblind.uses_strength
    blind.restore(face(), None)
    nonblind.restore(face(), 3.0)
    assert user_module.calls[-2:] == [("gaussian", None), ("gaussian", 3.0)]
    external_restorers(["u=user_restorers:upscale"], ["pixelate"])["pixelate"]["u"].restore(face())
    assert user_module.calls[-1] == (np.dtype(np.uint8), (128, 128, 3))
    with pytest.raises(ValueError, match="requires \\['model'\\]"):
        external_restorers(["m=user_restorers:needs_more"], ["gaussian"])
    external_restorers(["m=user_restorers:told?arg.kind=fixed"], ["gaussian"])["gaussian"]["m"].restore(face())
    assert user_module.calls[-1] == ("fixed", None)
    assert parse_external("m=a:b?arg.model=v1.4,arg.w=0.7,arg.face_align=true").extra == (
        ("model", "v1.4"), ("w", 0.7), ("face_align", True))
    with pytest.raises(ValueError, match="no parameter"):
        external_restorers(["m=user_restorers:upscale?arg.w=1"], ["gaussian"])
    with pytest.raises(ValueError, match="declared nonblind"):
        external_restorers(["u=user_restorers:upscale?nonblind"], ["gaussian"])
    with pytest.raises(ValueError, match="PYTHONPATH"):
        external_restorers(["x=no_such_module_here:fn"], ["gaussian"])


def test_audit_cli_python_callable_rows_next_to_ours(user_module, tmp_path, capsys):
    from audit.__main__ import main

    out = tmp_path / "audit"
    assert main([*QUICK, "--models", "none", "--external", "mine=user_restorers:upscale", "--out", str(out)]) == 0
    rows = _rows(out)
    assert sorted(r["model"] for r in rows) == ["mine", "mine", "none", "none"]
    mine = [r for r in rows if r["model"] == "mine"]
    assert all(r["model_family"] == "external" and r["uses_strength"] == "False" for r in mine)
    assert all(r["status"] in ("ok", "no_face_restored") for r in mine)
    assert all("256x256 resized to 128x128" in r["note"] for r in mine)
    assert all(float(r["psnr_restored"]) > 20 for r in mine)  # a real restoration was measured
    with open(out / "groups.csv", newline="") as fh:
        families = {r["model"]: r["model_family"] for r in csv.DictReader(fh)}
    assert families == {"mine": "external", "none": "none"}


def test_every_failure_mode_is_a_counted_row(user_module, tmp_path, capsys):
    from audit.__main__ import main

    out = tmp_path / "audit"
    externals = ["slow=user_restorers:slow?timeout=0.3", "boom=user_restorers:boom", "flat=user_restorers:flat",
                 "text=user_restorers:text", "nans=user_restorers:nan", "good=user_restorers:told"]
    argv = [*QUICK, "--models", "none", "--out", str(out)]
    for spec in externals:
        argv += ["--external", spec]
    assert main(argv) == 0
    status = {r["model"]: r["status"] for r in _rows(out)}
    assert len(_rows(out)) == 2 * (len(externals) + 1)  # no row dropped
    assert status == {"none": "ok", "good": "ok", "slow": "error:timeout", "boom": "error:exception",
                      "flat": "error:wrong_shape", "text": "error:not_image", "nans": "error:bad_values"}
    notes = {r["model"]: r["note"] for r in _rows(out)}
    assert "model weights not found" in notes["boom"] and "0.3 s" in notes["slow"]
    printed = capsys.readouterr().out
    assert "slow: 2 error:timeout rows" in printed and "boom: 2 error:exception rows" in printed
    with open(out / "groups.csv", newline="") as fh:
        n_error = {r["model"]: int(r["n_error"]) for r in csv.DictReader(fh) if r["attribute"] == "all"}
    assert n_error == {"none": 0, "good": 0, "slow": 2, "boom": 2, "flat": 2, "text": 2, "nans": 2}


def test_calls_run_concurrently_within_the_bound(user_module):
    restorer = external_restorers(["c=user_restorers:counting?concurrency=3"], ["motion"])["motion"]["c"]
    outcomes = restorer.restore_outcomes([face(i) for i in range(12)])
    close_restorers({"motion": {"c": restorer}})
    assert all(o.ok for o in outcomes)
    assert user_module.in_flight[1] == 3  # concurrent, never more than the bound


def test_rate_limit_spaces_calls(user_module):
    restorer = external_restorers(["r=user_restorers:told?rate=20,concurrency=4"], ["motion"])["motion"]["r"]
    starts = []
    original = restorer.runner.connect().fn
    restorer.runner.connect().fn = lambda img, **kw: (starts.append(time.monotonic()), original(img, **kw))[1]
    restorer.restore_outcomes([face(i) for i in range(6)])
    # 6 calls at 20/s: the limiter spaces their slots 50 ms apart (thread start jitter moves single gaps only)
    span = max(starts) - min(starts)
    assert len(starts) == 6 and span >= 0.9 * 5 / 20, np.diff(sorted(starts))


class FlakyCaller:
    """Fails with a retryable reason ``fails`` times, then answers."""

    def __init__(self, fails: int, reason: str = "connection"):
        self.fails, self.reason, self.calls = fails, reason, 0

    def call(self, img_u8, kind, strength, timeout):
        self.calls += 1
        if self.calls <= self.fails:
            raise RestoreFailure(self.reason, "503 from the Space")
        return img_u8, ""

    def close(self):
        pass


def test_retries_only_transient_failures():
    spec = parse_external("f=pkg:fn?retries=2")
    ok = Runner(spec, FlakyCaller(2)).run([face()], "gaussian", [None])[0]
    assert ok.ok and "succeeded on try 3" in ok.note
    failed = Runner(spec, FlakyCaller(3, "rate_limited")).run([face()], "gaussian", [None])[0]
    assert failed.status == "error:rate_limited" and "after 3 tries" in failed.note
    caller = FlakyCaller(5, "exception")
    assert Runner(spec, caller).run([face()], "gaussian", [None])[0].status == "error:exception"
    assert caller.calls == 1  # an error of the restorer itself is not retried


def test_restorers_pickle_for_worker_processes(user_module):
    restorers = external_restorers(["mine=user_restorers:told"], ["gaussian", "motion"])
    copy = pickle.loads(pickle.dumps(restorers))
    assert isinstance(copy["motion"]["mine"], ExternalRestorer)
    assert copy["motion"]["mine"].runner is copy["gaussian"]["mine"].runner  # one pool per spec, as before
    assert copy["motion"]["mine"].restore(face()).shape == (128, 128, 3)


def test_restore_outcomes_wraps_our_restorers():
    from deblur.restore.classical import NoRestorer

    class Broken:
        name, uses_strength = "broken", False

        def restore(self, img, strength=None):
            return img[:64]

    img = face()
    assert restore_outcomes(NoRestorer(), [img], [None])[0].ok
    assert restore_outcomes(Broken(), [img], [None])[0].status == "error:wrong_shape"


# ------------------------------------------------------------------------------------------- a Gradio app


def test_audit_cli_restorer_app(restorer_app, tmp_path, capsys):
    from audit.__main__ import main

    url, seen = restorer_app
    out = tmp_path / "audit"
    argv = [*QUICK, "--models", "none", "--out", str(out), "--external", f"remote={url}#/predict",
            "--external", f"told={url}#/nonblind?nonblind", "--external", f"boom={url}#/boom",
            "--external", f"slow={url}#/slow?timeout=0.5", "--external", f"text={url}#/text"]
    assert main(argv) == 0
    rows = _rows(out)
    status = {r["model"]: r["status"] for r in rows}
    assert len(rows) == 2 * 6
    assert status == {"none": "ok", "remote": "ok", "told": "ok", "boom": "error:exception", "slow": "error:timeout",
                      "text": "error:not_image"}
    remote = [r for r in rows if r["model"] == "remote"]
    assert all(r["model_family"] == "external" for r in remote)
    assert all(float(r["dist_restored_clean"]) > 0 for r in remote)  # the mirror image was measured, not the input
    assert ("predict", (128, 128, 3)) in seen and ("nonblind", "gaussian", 3.0) in seen
    assert "out of GPU quota" in {r["model"]: r["note"] for r in rows}["boom"]


def test_gradio_spec_errors_are_clear(restorer_app):
    url, _ = restorer_app
    with pytest.raises(ValueError, match="has no endpoint '/nope'.*'/predict'"):
        external_restorers([f"x={url}#/nope"], ["gaussian"])
    with pytest.raises(ValueError, match="takes 3 inputs.*required \\['kind', 'strength'\\]"):
        external_restorers([f"x={url}#/nonblind"], ["gaussian"])
    fixed = external_restorers([f"x={url}#/nonblind?arg.kind=given,arg.strength=7"], ["motion"])["motion"]["x"]
    assert fixed.restore_outcomes([face()])[0].ok and ("nonblind", "given", 7) in restorer_app[1]
    with pytest.raises(ValueError, match="cannot connect.*is the app running"):
        external_restorers([f"x=http://127.0.0.1:{free_port()}/#/predict?retries=0"], ["gaussian"])


def test_space_id_goes_through_gradio_client():
    # offline: DNS fails; online: the Hub answers that the Space does not exist. Either way a clear error.
    with pytest.raises(ValueError, match="cannot connect to facedrift-tests/no-such-space-4f2a"):
        external_restorers(["s=facedrift-tests/no-such-space-4f2a#/predict"], ["gaussian"])


def test_gradio_caller_leaves_no_files(restorer_app):
    url, _ = restorer_app
    restorers = external_restorers([f"r={url}#/predict?concurrency=3"], ["pixelate"])
    runner = restorers["pixelate"]["r"].runner
    folder = runner.connect().tmp
    outcomes = restorers["pixelate"]["r"].restore_outcomes([face(i) for i in range(4)])
    assert all(o.ok for o in outcomes)
    assert np.allclose(outcomes[1].image, face(1)[:, ::-1], atol=1 / 255)  # the app's answer, lossless PNG
    assert list(folder.iterdir()) == []  # each upload deleted after its call
    close_restorers(restorers)
    assert not folder.exists()
    assert restorers["pixelate"]["r"].restore_outcomes([face()])[0].ok  # closing releases; a later call reconnects
    close_restorers(restorers)


def test_restore_batch_raises_the_failure(restorer_app):
    url, _ = restorer_app
    restorer = external_restorers([f"b={url}#/boom"], ["gaussian"])["gaussian"]["b"]
    with pytest.raises(RestoreFailure, match="exception"):
        restorer.restore_batch(np.stack([face()]))
    close_restorers({"gaussian": {"b": restorer}})


def test_evaluate_cli_external(user_module, tmp_path):
    from deblur.train.evaluate import main

    out = tmp_path / "eval"
    assert main(["--out", str(out), "--n", "3", "--faces-n", "64", "--no-identity", "--strengths", "gaussian=3",
                 "--external", "mine=user_restorers:upscale", "--external", "boom=user_restorers:boom"]) == 0
    with open(out / "eval.csv", newline="") as fh:
        rows = {r["restorer"]: r for r in csv.DictReader(fh)}
    assert rows["mine"]["family"] == "external" and rows["mine"]["n"] == "3" and rows["mine"]["n_failed"] == "0"
    assert float(rows["mine"]["psnr"]) > 20
    assert (rows["boom"]["n"], rows["boom"]["n_failed"], rows["boom"]["failures"]) == ("0", "3", "error:exception=3")
    assert "`boom` (3 failed: error:exception=3)" in (out / "eval.md").read_text()
    with pytest.raises(SystemExit):
        main(["--out", str(out), "--n", "1", "--external", "x=no_such_module_here:fn"])


def test_app_field_takes_apps_and_spaces_only():
    from deblur.restore.external.spec import app_specs

    assert app_specs("") == []
    assert app_specs(" http://127.0.0.1:7860/#/predict \n\nmine=owner/space#/run?nonblind") == [
        "external=http://127.0.0.1:7860/#/predict", "mine=owner/space#/run?nonblind"]
    assert app_specs("https://host/app?x=1#/p") == ["external=https://host/app?x=1#/p"]
    for text in ("pkg.mod:fn", "x=pkg.mod:fn?nonblind"):
        with pytest.raises(ValueError, match="command line"):
            app_specs(text)
    with pytest.raises(ValueError, match="#/predict"):
        app_specs("http://127.0.0.1:7860/")


def test_safety_sweep_attacks_with_external_restorers(user_module, small_faces):
    from audit import safety
    from audit.safety.__main__ import main as safety_main
    from deblur.embed import get_embedder

    embedder = get_embedder("dlib")
    gallery = safety.gallery_from_faces(small_faces, embedder, n=12)
    extra = external_restorers(["mine=user_restorers:upscale", "boom=user_restorers:boom"], ["gaussian"])
    res = safety.sweep_face(small_faces.image(1), gallery=gallery, embedder=embedder, degradations=["gaussian"],
                            strengths={"gaussian": (2, 6)}, require_face=False, extra_restorers=extra)
    rows = res.table.set_index("restorer")
    assert set(rows.loc["mine", "family"]) == {"external"} and set(rows.loc["mine", "status"]) == {"ok"}
    assert rows.loc["mine", "distance"].notna().all()  # the external output was embedded and matched
    assert all(str(s).startswith("error") for s in rows.loc["boom", "status"])
    parrot = res.table[res.table["attacker"] == "parrot"]  # 12 faces cannot calibrate FMR 1 %: said, not raised
    assert parrot["status"].str.contains("cannot calibrate a 1% false-match rate").all()
    with pytest.raises(SystemExit):  # the CLI refuses a spec it cannot import, before any work
        safety_main(["--image", "examples/astronaut.png", "--external", "x=no_such_module_here:fn"])
