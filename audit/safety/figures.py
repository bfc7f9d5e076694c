"""Plotly figures of a one-face sweep and of the per-group safe strengths of a data set."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import plotly.express as px
import plotly.graph_objects as go

from audit.safety.obscure import check_kind
from audit.safety.sweep import STRENGTH_LABELS, SweepResult
from deblur.degrade import STRENGTHS

if TYPE_CHECKING:  # annotation only: dataset.py imports this module to write its figures
    from audit.safety.dataset import DatasetSafety

__all__ = ["figure", "group_figures"]


def figure(result: SweepResult, kind: str):
    """Plotly figure: identity distance restored→original vs strength, one line per restorer.

    Dashed line: the threshold; dotted: threshold + margin; green band/line: the recommended strength.
    Crosses mark rank-1 re-identifications.
    """
    check_kind(kind)
    t = result.table[result.table["degradation"] == kind]
    if t.empty:
        raise ValueError(f"{kind!r} was not swept; swept: {sorted(result.table['degradation'].unique())}")
    rec = result.recommendations[kind]
    fig = go.Figure()
    for name, part in t.groupby("restorer", sort=False):
        part = part.sort_values("strength")
        fig.add_trace(go.Scatter(x=part["strength"], y=part["distance"], mode="lines+markers", name=str(name),
                                 marker={"symbol": np.where(part["rank1"], "x", "circle"), "size": 8},
                                 hovertemplate="strength %{x}<br>distance %{y:.3f}<extra>" + str(name) + "</extra>"))
    fig.add_hline(y=rec.threshold, line_dash="dash", line_color="red",
                  annotation_text=f"match threshold {rec.threshold:.2f} (FMR {result.threshold.fmr_target:g})")
    if rec.margin > 0:
        fig.add_hline(y=rec.threshold + rec.margin, line_dash="dot", line_color="orange",
                      annotation_text=f"threshold + margin {rec.threshold + rec.margin:.2f}",
                      annotation_position="bottom right")
    if rec.strength is not None:
        fig.add_vline(x=rec.strength, line_color="green", line_width=3,
                      annotation_text=f"recommended ≥ {rec.strength:g}", annotation_position="top left")
        title = f"{kind}: safe from {rec.strength:g} against these restorers (lower bound on risk)"
    else:
        title = f"{kind}: no tested strength defeats every restorer (up to {rec.tested_max:g})"
    unit = STRENGTH_LABELS.get(kind) or STRENGTHS[kind].name
    fig.update_layout(title=title, xaxis_title=f"{unit}, pixels of the 128-px face crop",
                      yaxis_title=f"identity distance restored→original (L2, {result.embedder})",
                      legend_title="restorer (× = rank-1 re-identified)", template="plotly_white", height=420)
    return fig


def group_figures(ds: DatasetSafety) -> list:
    """Per attribute: mean safe strength per group and kind with 95% bootstrap CIs (faces with a safe strength)."""
    figs = []
    g = ds.groups
    if g.empty:
        return figs
    for attr, part in g.groupby("attribute", sort=True):
        part = part.assign(err_plus=part["mean_hi"] - part["mean"], err_minus=part["mean"] - part["mean_lo"],
                           label=part["group"] + np.where(part["small"], " (small n)", ""))
        source = ds.group_columns.get(attr, "all")
        fig = px.scatter(part, x="label", y="mean", error_y="err_plus", error_y_minus="err_minus",
                         facet_col="degradation", hover_data=["n", "n_safe", "median", "no_safe_rate"],
                         title=f"Safe strength by {attr} ({source}); mean, 95% bootstrap CI, faces with a safe "
                               "strength only",
                         labels={"mean": "safe strength (px)", "label": attr})
        fig.update_yaxes(matches=None)
        figs.append(fig)
    return figs
