"""The one strengths module: ranges, named grids and the one `kind=a,b` parser every CLI and tab uses."""

from __future__ import annotations

import pytest

from deblur import strengths as S


def test_grids_parse_back_from_their_text():
    for grid in (S.AUDIT_GRID, S.EVAL_GRID, S.SAFETY_GRID):
        parsed = S.parse_strengths(S.format_grid(grid), defaults={})
        assert parsed == {k: tuple(float(v) for v in vs) for k, vs in grid.items()}


def test_per_kind_shared_and_default_values():
    kinds = ["gaussian", "pixelate", "motion"]
    assert S.parse_strengths("gaussian=1,2 5", kinds) == {"gaussian": (1.0, 2.0), "pixelate": (5.0,), "motion": (5.0,)}
    assert S.parse_strengths(None, ["motion"]) == {"motion": (9.0, 15.0)}  # AUDIT_GRID
    assert S.parse_strengths(["gaussian=3"], defaults=S.EVAL_GRID) == {"gaussian": (3.0,)}
    assert S.parse_strengths([], defaults=S.EVAL_GRID) == S.EVAL_GRID
    assert S.parse_strengths("pixelate_noise=4,8", defaults=S.SAFETY_GRID) == {"pixelate_noise": (4.0, 8.0)}


@pytest.mark.parametrize(("text", "kinds", "match"), [
    ("gaussian:2,4", None, r"write gaussian=2,4"),
    ("gaussian=two", None, "cannot read"),
    ("sepia=2", None, "unknown degradation"),
    ("gaussian=2", ["motion"], "not among"),
    ("pixelate=2.5", None, "whole number"),
    ("gaussian=-1", None, ">= 0"),
    ("gaussian=", None, "no number"),
])
def test_bad_text_says_what_to_write(text, kinds, match):
    with pytest.raises(ValueError, match=match):
        S.parse_strengths(text, kinds)


def test_unselected_kinds_can_be_ignored():
    assert S.parse_strengths(S.format_grid(S.AUDIT_GRID), ["motion"], ignore_unselected=True) == {"motion": (9.0, 15.0)}


def test_ranges_and_obscurings():
    assert S.strength_range("pixelate_noise") is S.STRENGTHS["pixelate"]
    assert S.strength_range("fill") is None
    with pytest.raises(ValueError, match="unknown degradation"):
        S.strength_range("jpeg")
    for spec in S.STRENGTHS.values():
        assert spec.identity <= spec.low <= spec.default <= spec.high
