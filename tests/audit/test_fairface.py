"""FairFace from the Hub, offline: the download function is injected and writes a parquet fixture with the
Hub's exact schema, so the network path (download, verify, record, cache hit) runs for real."""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import numpy as np
import pyarrow.parquet as pq
import pytest

from audit.data import fairface
from audit.data.fairface import DatasetUnavailable, download_fairface, fairface_faces
from audit.data.labelled import iter_images
from audit.data.loaders import load_dataset
from deblur.io import ImageError
from tests.fixtures_data import write_fairface_parquet

HUB_NAME = "0.25/validation-00000-of-00001-951dbd63c8724ee1.parquet"  # the file's name on the Hub


class FakeHub:
    """Stands in for :func:`audit.data.fairface.hub_download`: writes the fixture where the Hub's file would land."""

    def __init__(self, per_race=(4, 4, 4, 4, 4, 4, 1), corrupt=(), error: Exception | None = None):
        self.per_race, self.corrupt, self.error = per_race, corrupt, error
        self.calls: list[Path] = []
        self.rows = 0

    def __call__(self, dest: Path, progress=None) -> list[Path]:
        self.calls.append(dest)
        if self.error is not None:
            raise self.error
        path = dest / HUB_NAME
        self.rows = write_fairface_parquet(path, self.per_race, self.corrupt)
        if progress is not None:
            progress(1.0, "downloaded")
        return [path]


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory):
    """One downloaded fixture shared by the sampling tests (generating faces takes a moment on 2 cores)."""
    hub = FakeHub(corrupt=(5,))
    cache = tmp_path_factory.mktemp("fairface")
    download_fairface(cache, hub, expected_rows=None)
    return cache


def test_download_then_cache_hit_without_network(tmp_path):
    hub = FakeHub()
    messages = []
    files = download_fairface(tmp_path, hub, progress=lambda f, m: messages.append((f, m)), expected_rows=None)
    assert len(hub.calls) == 1 and files == [tmp_path / HUB_NAME]
    assert messages[0][0] == 0.0 and "about 63 MB" in messages[0][1] and messages[-1][0] == 1.0
    record = json.loads((tmp_path / "fairface-0.25-validation.json").read_text())
    assert record["rows"] == hub.rows and record["repo_id"] == "HuggingFaceM4/FairFace"
    assert record["files"][0]["name"] == HUB_NAME and len(record["files"][0]["sha256"]) == 64

    def no_network(dest, progress=None):
        raise AssertionError("cache hit must not call the download function")

    assert download_fairface(tmp_path, no_network, expected_rows=None) == files
    faces = fairface_faces(2, cache=tmp_path, download=no_network, expected_rows=None)
    assert len(faces) == 2 * 7 - 1  # the seventh race has a single face


def test_changed_file_is_downloaded_again(tmp_path):
    hub = FakeHub()
    download_fairface(tmp_path, hub, expected_rows=None)
    with (tmp_path / HUB_NAME).open("ab") as fh:
        fh.write(b"tampered")
    download_fairface(tmp_path, hub, expected_rows=None)
    assert len(hub.calls) == 2


def test_default_cache_folder_follows_facedrift_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEDRIFT_CACHE", str(tmp_path))
    hub = FakeHub(per_race=(1,) * 7)
    files = download_fairface(download=hub, expected_rows=7)
    assert files[0].is_relative_to(tmp_path / "fairface")


@pytest.mark.parametrize("error", [httpx.ConnectError("[Errno -2] Name or service not known"),
                                   ConnectionError("network is unreachable"), TimeoutError("timed out")])
def test_offline_raises_dataset_unavailable(tmp_path, error):
    with pytest.raises(DatasetUnavailable, match="Could not download FairFace") as info:
        fairface_faces(5, cache=tmp_path, download=FakeHub(error=error))
    message = str(info.value)
    assert "HuggingFaceM4/FairFace" in message and "built-in" in message and type(error).__name__ in message
    assert not (tmp_path / "fairface-0.25-validation.json").exists()


def test_real_offline_hub_error_is_unavailable(tmp_path):
    from huggingface_hub.errors import LocalEntryNotFoundError

    with pytest.raises(DatasetUnavailable, match="built-in"):
        download_fairface(tmp_path, FakeHub(error=LocalEntryNotFoundError("cannot find the requested files")))


def test_programming_errors_are_not_reported_as_offline(tmp_path):
    with pytest.raises(TypeError):
        download_fairface(tmp_path, FakeHub(error=TypeError("bug")))


def test_verification_row_count_and_columns(tmp_path):
    with pytest.raises(DatasetUnavailable, match="expected 10954"):
        download_fairface(tmp_path / "a", FakeHub())
    assert not (tmp_path / "a" / "fairface-0.25-validation.json").exists()

    def wrong_file(dest, progress=None):
        path = dest / HUB_NAME
        path.parent.mkdir(parents=True)
        pq.write_table(pq.read_table(tmp_path / "a" / HUB_NAME).drop_columns(["race"]), path)
        return [path]

    with pytest.raises(DatasetUnavailable, match=r"lacks FairFace columns \['race'\]"):
        download_fairface(tmp_path / "b", wrong_file, expected_rows=None)

    def not_parquet(dest, progress=None):
        (dest / "x.parquet").write_bytes(b"<html>rate limited</html>")
        return [dest / "x.parquet"]

    with pytest.raises(DatasetUnavailable, match="not readable parquet"):
        download_fairface(tmp_path / "c", not_parquet, expected_rows=None)
    with pytest.raises(DatasetUnavailable, match="no files"):
        download_fairface(tmp_path / "d", lambda dest, progress=None: [], expected_rows=None)


def test_fixture_has_the_hub_schema(hub_cache):
    schema = pq.read_schema(hub_cache / HUB_NAME)
    assert str(schema.field("image").type) == "struct<bytes: binary, path: string>"
    assert [str(schema.field(c).type) for c in ("age", "gender", "race", "service_test")] == \
        ["int64", "int64", "int64", "bool"]


def test_stratified_sample_is_seeded(hub_cache):
    def sample(seed):
        return fairface_faces(3, seed=seed, cache=hub_cache, download=FakeHub(), expected_rows=None)

    a, b, c = sample(0), sample(0), sample(1)
    assert list(a.frame["id"]) == list(b.frame["id"])
    assert list(a.frame["id"]) != list(c.frame["id"])
    counts = a.frame["race"].value_counts().to_dict()
    assert counts == {name: 3 for name in fairface.RACE_NAMES[:6]} | {"Southeast Asian": 1}
    assert a.source == "fairface-hub" and a.label_source == "label" and a.group_columns == ["race"]
    assert set(a.frame["gender"]) <= {"Male", "Female"} and set(a.frame["age"]) <= set(fairface.AGE_NAMES)
    assert a.frame["path"].isna().all() and set(a.images) == set(a.frame["id"])


def test_label_codes_map_to_card_names(hub_cache):
    faces = fairface_faces(10, cache=hub_cache, download=FakeHub(), expected_rows=None)
    table = pq.read_table(hub_cache / HUB_NAME, columns=["race", "gender", "age"]).to_pandas()
    for _, row in faces.frame.iterrows():
        source = table.loc[row["row"]]
        assert row["race"] == fairface.RACE_NAMES[source["race"]]
        assert row["gender"] == fairface.GENDER_NAMES[source["gender"]]
        assert row["age"] == fairface.AGE_NAMES[source["age"]]
    assert fairface.RACE_NAMES[0] == "East Asian" and fairface.RACE_NAMES[5] == "Latino_Hispanic"


def test_small_group_is_flagged(hub_cache):
    faces = fairface_faces(2, cache=hub_cache, download=FakeHub(), expected_rows=None)
    assert faces.meta["small_groups"] == {"Southeast Asian": 1}
    assert any("Southeast Asian (1)" in n for n in faces.notes)


def test_groups_absent_from_the_data_are_flagged_with_zero(hub_cache):
    faces = fairface_faces(1, group_by=("race", "gender"), cache=hub_cache, download=FakeHub(), expected_rows=None)
    assert len(faces.meta["small_groups"]) >= 1 and all(isinstance(n, int) for n in faces.meta["small_groups"].values())
    assert len(faces) + sum(1 - n for n in faces.meta["small_groups"].values()) == 14


def test_corrupt_row_is_counted_not_fatal(hub_cache):
    faces = fairface_faces(4, cache=hub_cache, download=FakeHub(), expected_rows=None)
    assert list(faces.skipped["id"]) == ["fairface-validation-5"]
    assert faces.skipped["reason"].iloc[0].startswith("corrupt image")
    # Row 5 is one of the four Indian faces (rows 4-7): that group now falls short and says so.
    assert faces.meta["small_groups"] == {"Indian": 3, "Southeast Asian": 1}
    images = [img for _, img in iter_images(faces)]
    assert len(images) == len(faces) and not any(isinstance(i, ImageError) for i in images)
    assert all(i.shape == (64, 64, 3) and i.dtype == np.float32 for i in images)


def test_notes_carry_licence_and_caveat(hub_cache):
    faces = fairface_faces(1, cache=hub_cache, download=FakeHub(), expected_rows=None)
    assert "FairFace, Kärkkäinen & Joo 2021, CC BY 4.0" in faces.notes[0]
    assert any("annotator judgements" in n for n in faces.notes)


def test_bad_arguments(hub_cache):
    with pytest.raises(ValueError, match="n_per_group"):
        fairface_faces(0, cache=hub_cache, download=FakeHub(), expected_rows=None)
    with pytest.raises(ValueError, match="group_by"):
        fairface_faces(1, group_by=("skin",), cache=hub_cache, download=FakeHub(), expected_rows=None)


def test_load_dataset_dispatches_to_the_hub(hub_cache):
    faces = load_dataset("fairface-hub", n_per_group=1, cache=hub_cache, download=FakeHub(), expected_rows=None)
    assert faces.source == "fairface-hub" and len(faces) == 7


def test_hub_download_calls_snapshot_download(tmp_path, monkeypatch):
    import huggingface_hub

    seen = {}

    def fake_snapshot_download(repo_id, **kwargs):
        seen.update(kwargs, repo_id=repo_id)
        write_fairface_parquet(Path(kwargs["local_dir"]) / HUB_NAME, (1,) * 7)
        bar = kwargs["tqdm_class"](total=100, unit="B", file=io.StringIO())
        bar.update(50)
        bar.close()
        return str(kwargs["local_dir"])

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    progress = []
    files = fairface.hub_download(tmp_path, lambda f, m: progress.append(f))
    assert files == [tmp_path / HUB_NAME] and progress == [0.5]
    assert seen["repo_id"] == "HuggingFaceM4/FairFace" and seen["repo_type"] == "dataset"
    assert seen["allow_patterns"] == "0.25/validation-*.parquet"


def test_rows_are_interleaved_across_groups(hub_cache):
    faces = fairface_faces(3, cache=hub_cache, download=FakeHub(), expected_rows=None)
    assert sorted(faces.frame["race"].iloc[:7]) == sorted(fairface.RACE_NAMES)


def test_cli_name_fairface_means_the_hub(hub_cache, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no folder called "fairface" here
    faces = load_dataset("fairface", n_per_group=1, cache=hub_cache, download=FakeHub(), expected_rows=None)
    assert faces.source == "fairface-hub"
