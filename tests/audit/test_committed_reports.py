"""The committed example reports (results/) are what the code computes from their own per-image rows.

Only the group tables are recomputed (statistics, not embeddings): the per-image measurements take minutes to
hours and are checked by the engine and safety tests instead.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from audit import report
from audit.safety import dataset
from deblur.train import release

RESULTS = Path(__file__).resolve().parents[2] / "results"


def assert_same_table(got: pd.DataFrame, committed: pd.DataFrame) -> None:
    """Same rows and the same values in every committed column (columns added since are not in the committed file)."""
    missing = [c for c in committed.columns if c not in got.columns]
    assert not missing and len(got) == len(committed), f"columns the code no longer writes: {missing}"
    got = got[list(committed.columns)]
    numeric = committed.select_dtypes("number").columns
    other = [c for c in committed.columns if c not in numeric]
    pd.testing.assert_frame_equal(got[other].astype(str), committed[other].astype(str))
    np.testing.assert_allclose(got[numeric].to_numpy(float), committed[numeric].to_numpy(float), rtol=1e-12,
                               atol=1e-12, equal_nan=True)


def test_audit_example_groups_reproduce(tmp_path):
    src = RESULTS / "audit_example"
    for name in ("per_image.csv", "run.json"):
        shutil.copy(src / name, tmp_path / name)
    report.rebuild(tmp_path)
    assert_same_table(pd.read_csv(tmp_path / "groups.csv"), pd.read_csv(src / "groups.csv"))


def test_safety_example_groups_reproduce():
    src = RESULTS / "safety_example"
    settings = json.loads((src / "safety.json").read_text())
    per_face = pd.read_csv(src / "safety_per_image.csv", keep_default_na=False, na_values=[""])
    got = dataset.group_table(per_face, list(settings["strengths"]), settings["group_columns"], settings["n_boot"],
                              settings["seed"], min_n=30)
    committed = pd.read_csv(src / "safety_groups.csv")
    assert_same_table(pd.read_csv(io.StringIO(got.to_csv(index=False))), committed)



def test_model_cards_and_results_table_reproduce_from_the_manifest(tmp_path):
    """``python -m deblur.train --ship`` writes the committed cards and RESULTS.md from the manifest entries."""
    weights = RESULTS.parent / "weights"
    models = json.loads((weights / "manifest.json").read_text())["models"]
    (tmp_path / "sweep").mkdir()
    shutil.copy(weights / "sweep" / "pix_ae_sweep.csv", tmp_path / "sweep")  # the pix_ae card cites the sweep
    for name, entry in models.items():
        written = release.write_card(name, entry, tmp_path / "cards")
        assert written.read_text() == (weights / "cards" / f"{name}.md").read_text(), name
    assert release.results_table(models) == (weights / "RESULTS.md").read_text()
