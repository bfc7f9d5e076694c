"""The deface comparison run for real: deface's own CLI (CenterFace) on a scene, then our attackers."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from audit.safety.peers import DEFACE_MODES, measure_peers, run_deface, summarise
from deblur.data import builtin_faces


@pytest.fixture(scope="module")
def rows():
    if shutil.which("deface") is None and not (Path(sys.executable).parent / "deface").is_file():
        pytest.fail("deface is pinned in requirements.txt; its CLI must be installed beside this Python")
    test = builtin_faces(4000, 0).subset("test")
    probes = [(test.ids[300], test.images[300].astype("float32") / 255)]  # a stranger to the attackers' gallery
    return measure_peers(probes, sizes=(160,), n_gallery=20, progress=lambda m: None)


def test_every_deface_mode_and_ours_is_attacked_by_every_attacker(rows):
    assert set(rows["setting"]) >= set(DEFACE_MODES)
    assert (rows["tool"].str.startswith("facedrift")).any()
    deface = rows[rows["tool"].str.startswith("deface")]
    assert set(deface["attacker"]) >= {"parrot", "restore"}
    assert deface["detected"].all(), "deface found and changed the face in its scene"


def test_solid_fill_and_our_anonymiser_hold_and_the_summary_counts_faces(rows):
    summary = summarise(rows)
    assert (summary["faces"] == 1).all()
    assert summary.loc[summary["setting"] == "solid", "reidentified"].tolist() == [0]
    ours = summary[summary["tool"].str.startswith("facedrift")]
    assert len(ours) == 1 and ours["reidentified"].iloc[0] == 0


def test_missing_deface_executable_is_a_clear_error():
    with pytest.raises(FileNotFoundError, match="pip install deface"):
        run_deface([], [], deface="no-such-deface-here")
