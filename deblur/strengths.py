"""Degradation strengths: valid ranges, the named grids every tool sweeps, and the one text syntax for them.

Strengths are stated in pixels of the image they are applied to (for the built-in set and every face
crop: the 128-px crop), see :mod:`deblur.degrade` for what each number means.

- :data:`STRENGTHS`: per degradation, the valid and offered range (sliders, random training strengths,
  the app's bounds).
- Named grids (:data:`GRIDS`): the strengths a tool evaluates by default. ``"audit"`` (``python -m audit``
  and the app's Audit tab), ``"eval"`` (the evaluation table and the training run's held-out check),
  ``"safety"`` ("Is this blur safe?", which also sweeps the non-invertible obscurings ``fill`` and
  ``pixelate_noise``).
- :func:`parse_strengths`: the one syntax every command line and tab accepts: ``kind=a,b`` per kind, bare
  numbers for every kind without its own list, e.g. ``"gaussian=2,4 motion=9,15"`` or ``"2 4"``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["AUDIT_GRID", "ESTIMATE_GRID", "EVAL_GRID", "GRIDS", "OBSCURING_KINDS", "SAFETY_GRID", "STRENGTHS",
           "Strength", "check_strength", "format_grid", "parse_strengths", "strength_range"]


@dataclass(frozen=True)
class Strength:
    """Valid and offered strengths of one degradation, in pixels of the image it is applied to.

    Attributes:
        name: what the number means, for labels.
        identity: the strength that leaves the image unchanged.
        low: the smallest value the UI and sweeps offer.
        high: the largest value the UI and sweeps offer (identity is mostly gone well before it on
            128-px faces: σ≈4, motion ≥15, block ≥6, see ASSETS.md).
        step: slider step.
        integer: whether the strength must be a whole number.
        default: the value the playground starts with.
    """

    name: str
    identity: float
    low: float
    high: float
    step: float
    integer: bool
    default: float


STRENGTHS: dict[str, Strength] = {
    "gaussian": Strength("sigma (px)", 0.0, 0.0, 8.0, 0.5, False, 3.0),
    "pixelate": Strength("block size (px)", 1, 1, 16, 1, True, 8),
    "motion": Strength("kernel length (px)", 1, 1, 31, 2, True, 15),
}

# Non-invertible obscurings (:func:`deblur.degrade.solid_fill`, :func:`deblur.degrade.pixelate_noise`) and the
# degradation whose strength range they use (``None``: no strength at all).
OBSCURING_KINDS: dict[str, str | None] = {"fill": None, "pixelate_noise": "pixelate"}

AUDIT_GRID: dict[str, tuple[float, ...]] = {"gaussian": (2, 4, 6), "pixelate": (4, 8), "motion": (9, 15)}
EVAL_GRID: dict[str, tuple[float, ...]] = {
    "gaussian": (2.0, 4.0, 6.0),
    "pixelate": (4.0, 8.0, 12.0),
    "motion": (9.0, 15.0, 21.0),
}
# 7-9 strengths per degradation keep a one-face sweep near 55 dlib embeddings (~80 ms CPU each). They go
# beyond STRENGTHS.high where the attacker with the true kernel still wins there: Wiener undid σ=8 on some
# faces and every motion length up to 63 px on ours. σ > 12 is left out: the 2-D Gaussian kernel of
# deblur.degrade costs ~0.3 s per image at σ=12 and grows with σ².
SAFETY_GRID: dict[str, tuple[float, ...]] = {
    "gaussian": (0, 1, 2, 3, 4, 6, 8, 10, 12),
    "pixelate": (1, 2, 4, 6, 8, 10, 12, 16),
    "motion": (1, 9, 15, 21, 31, 45, 63),
    "fill": (1,),
    "pixelate_noise": (4, 8, 12),
}
# The blind estimator's accuracy grid (deblur.estimate_fit): mild to strong, incl. σ 1 and motion 5.
ESTIMATE_GRID: dict[str, tuple[float, ...]] = {"gaussian": (1.0, 2.0, 4.0, 6.0), "pixelate": (4, 8, 12),
                                               "motion": (5, 9, 15, 21)}
GRIDS: dict[str, dict[str, tuple[float, ...]]] = {"audit": AUDIT_GRID, "eval": EVAL_GRID, "safety": SAFETY_GRID,
                                                  "estimate": ESTIMATE_GRID}


def strength_range(kind: str) -> Strength | None:
    """The :class:`Strength` that bounds ``kind`` (an obscuring uses its base degradation's; ``fill`` has none).

    Raises:
        ValueError: for an unknown kind.
    """
    if kind in STRENGTHS:
        return STRENGTHS[kind]
    if kind in OBSCURING_KINDS:
        base = OBSCURING_KINDS[kind]
        return None if base is None else STRENGTHS[base]
    raise ValueError(f"unknown degradation {kind!r}; choose one of {sorted(STRENGTHS)}")


def check_strength(kind: str, value: float) -> float:
    """``value`` as a float if it is a valid strength of degradation ``kind`` (or of an obscuring's base).

    Raises:
        ValueError: not a finite number, below the identity strength, or fractional where whole pixels are needed.
    """
    spec = strength_range(kind)
    if spec is None:  # fill: nothing to check
        return float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{kind} strength ({spec.name}) must be a number, got {value!r}")
    if not math.isfinite(float(value)):
        raise ValueError(f"{kind} strength ({spec.name}) must be finite, got {value!r}")
    if float(value) < spec.identity:
        raise ValueError(f"{kind} strength ({spec.name}) must be >= {spec.identity:g}, got {value!r}")
    if spec.integer and float(value) != int(value):
        raise ValueError(f"{kind} strength ({spec.name}) must be a whole number of pixels, got {value!r}")
    return float(value)


def format_grid(grid: Mapping[str, Sequence[float]]) -> str:
    """A grid in the :func:`parse_strengths` syntax: ``{"gaussian": (2, 4)}`` -> ``"gaussian=2,4"``."""
    return " ".join(f"{kind}={','.join(f'{float(v):g}' for v in values)}" for kind, values in grid.items())


def _tokens(text: str | Iterable[str] | None) -> list[str]:
    if text is None:
        return []
    items = [text] if isinstance(text, str) else list(text)
    return [t for item in items for t in str(item).split()]


def _numbers(token: str, values: str) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in values.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"cannot read strengths {token!r}: use numbers (2,4,6) or kind=2,4,6") from None
    if not out:
        raise ValueError(f"strengths {token!r} list no number: use kind=2,4,6")
    return out


def parse_strengths(text: str | Iterable[str] | None, kinds: Sequence[str] | None = None,
                    defaults: Mapping[str, Sequence[float]] = AUDIT_GRID, *,
                    ignore_unselected: bool = False) -> dict[str, tuple[float, ...]]:
    """Strengths per degradation from ``kind=a,b`` items and bare numbers (the syntax of every CLI and tab).

    Args:
        text: a string (items separated by spaces) or a sequence of items, e.g. ``["gaussian=2,4", "9"]``.
            ``kind=a,b`` sets one kind's strengths; bare numbers (``2 4`` or ``2,4``) apply to every kind
            without its own list.
        kinds: the kinds to return, in this order. ``None``: the kinds named in ``text``, or every kind of
            ``defaults`` when ``text`` names none.
        defaults: the grid for kinds given neither their own list nor bare numbers (one of :data:`GRIDS`).
        ignore_unselected: drop ``kind=`` items for kinds outside ``kinds`` (a tab whose text box keeps lists
            for kinds not ticked) instead of raising.

    Returns:
        ``{kind: (strength, ...)}`` with each strength validated by :func:`check_strength`.

    Raises:
        ValueError: for a malformed item, an unknown kind, a kind outside ``kinds`` or an invalid strength; the
            message says what to write instead.
    """
    per_kind: dict[str, tuple[float, ...]] = {}
    shared: list[float] = []
    for token in _tokens(text):
        if "=" in token:
            kind, values = token.split("=", 1)
            strength_range(kind)  # unknown kind -> ValueError naming the known ones
            if kinds is not None and kind not in kinds:
                if ignore_unselected:
                    continue
                raise ValueError(f"strengths name {kind!r}, which is not among the degradations {list(kinds)}")
            per_kind[kind] = _numbers(token, values)
        elif ":" in token:  # the evaluation CLI's old syntax
            kind, values = token.split(":", 1)
            raise ValueError(f"cannot read strengths {token!r}: write {kind}={values} (kind=a,b)")
        else:
            shared += _numbers(token, token)
    if kinds is None:
        kinds = list(per_kind) or list(defaults)
    out: dict[str, tuple[float, ...]] = {}
    for kind in kinds:
        if kind in per_kind:
            values = per_kind[kind]
        elif shared:
            values = tuple(shared)
        elif kind in defaults:
            values = tuple(defaults[kind])
        else:
            strength_range(kind)
            raise ValueError(f"no strengths given for {kind!r} and it has no default; write {kind}=a,b")
        out[kind] = tuple(check_strength(kind, v) for v in values)
    return out
