"""The app's Audit and Playground tabs with an external restorer: a real Gradio app on localhost, called through
the tabs' handlers and through the launched app's API; Python callables and public Spaces are refused."""

from __future__ import annotations

import gradio as gr
import numpy as np
import pytest

from ui import audit_tab, common
from ui import playground as playground_tab

ASTRONAUT = "examples/astronaut.png"


def test_playground_tab_shows_an_external_restorer(restorer_app):
    url, seen = restorer_app
    result = playground_tab.run_playground(ASTRONAUT, "face", "clean", "gaussian", 3.0,
                                           external=f"{url}#/predict\nboom={url}#/boom")
    recs = {rec.name: rec for rec in result.reconstructions}
    assert recs["external"].family == "external" and recs["external"].status == "ok"
    assert np.allclose(recs["external"].image, result.degraded[:, ::-1], atol=1 / 255)  # the app's mirror image
    assert recs["boom"].image is None and recs["boom"].status == "error:exception"
    rows = result.table.set_index("restorer")
    assert rows.loc[recs["external"].label, "family"] == "external"
    assert np.isfinite(rows.loc[recs["external"].label, "PSNR (dB)"])
    assert "failed, error:exception" in rows.loc[recs["boom"].label, "reading"]
    outputs = playground_tab.outputs_for_ui(result, playground_tab.reconstruction_slots())
    labels = [o.get("label", "") for o in outputs[2:-2] if isinstance(o, dict) and o.get("visible")]
    assert any(recs["external"].label in label for label in labels)  # its panel is labelled like the others
    assert not any(recs["boom"].label in label for label in labels)


def test_audit_tab_audits_an_external_restorer(restorer_app, tmp_path):
    url, _ = restorer_app
    run = audit_tab.run_audit_request(["none"], ["gaussian"], "gaussian=3", 2, 0, n_boot=20, work=tmp_path,
                                      external=f"mirror={url}#/predict\nslow={url}#/slow?timeout=0.5")
    families = dict(zip(run.table["model"], run.table["model_family"], strict=False))
    assert families == {"none": "none", "mirror": "external", "slow": "external"}
    assert "`slow`: 2 rows error:timeout" in run.status
    assert "model_family" in audit_tab.TABLE_COLUMNS


@pytest.mark.parametrize("text, words", [("mypkg.mod:fn", "command line"), ("http://127.0.0.1:1/", "#/predict")])
def test_tabs_refuse_python_callables_and_bad_specs(text, words):
    with pytest.raises(gr.Error, match=words):
        playground_tab.run_playground(ASTRONAUT, "face", "clean", "gaussian", 3.0, external=text)
    with pytest.raises(gr.Error, match=words):
        audit_tab.run_audit_request(["none"], ["gaussian"], "gaussian=3", 2, 0, external=text)


def test_no_external_restorers_on_a_public_space(monkeypatch, restorer_app):
    monkeypatch.setattr(common, "ON_SPACES", True)
    with pytest.raises(ValueError, match="locally"):
        common.external_specs(f"{restorer_app[0]}#/predict")
    assert common.external_specs("  ") == []


def test_app_api_playground_with_external(restorer_app, tmp_path):
    """``python app.py`` in its own process, called as a user's script would: the external restorer's row comes
    back labelled, and the app keeps no file of the call (the PNG it sent lived in a temp folder it removed)."""
    from gradio_client import Client, handle_file

    from bench.server import app_process

    url, _ = restorer_app
    with app_process(tmp_path) as app:
        client = Client(app.url, verbose=False)
        out = client.predict(handle_file(ASTRONAUT), "face", "clean", "gaussian", 3.0,
                             external=f"mine={url}#/predict", api_name="/playground")
        leftovers = list(app.tmpdir.glob("facedrift-external-*"))
    table = next(o for o in out if isinstance(o, dict) and "headers" in o)  # the metrics Dataframe
    rows = {r[0]: r[1] for r in table.get("data", table.get("value", []))}
    assert any(family == "external" and "mine" in name for name, family in rows.items()), rows
    assert leftovers == []
