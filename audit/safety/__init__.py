"""'Is this blur safe?': how strong must obscuring be before none of our restorers brings the identity back.

For one face crop, :func:`sweep_face` degrades it over a grid of strengths per degradation, rounds every
degraded image to 8 bits (as a saved photo is), runs every restorer we have on it — the classical
non-blind ones are *told the true kernel or block size* (the attacker who guesses the kernel), the learned
models, and ``"none"`` (the obscured image itself) — embeds each output and measures

- the identity distance restored→original (L2 between embeddings), and
- rank-1 re-identification against a gallery: the built-in faces' clean embeddings plus the original.

A restorer **re-identifies** at a strength when its distance is ``<= threshold + margin`` (threshold
calibrated at a fixed false-match rate on the gallery) *or* the nearest gallery face is the original. The
**recommended strength** of a degradation is the smallest tested strength from which no restorer
re-identifies at that strength *or any larger tested one* (a curve that dips back under the threshold
does not get a recommendation below the dip); ``None`` when no tested strength qualifies.

Two non-invertible obscurings are swept the same way for comparison: ``fill`` (the crop replaced by its
mean colour, or black) and ``pixelate_noise`` (block means plus seeded Gaussian noise per block, in the
spirit of Fan's differentially private pixelisation, 2018).

This measures a **lower bound on risk**: stronger restorers exist (GFPGAN, CodeFormer, PULSE-style
generative search over a face prior), an attacker may have a better gallery, and the identity judge is one
embedder (dlib). "Safe here" does not mean safe.

Modules: :mod:`~audit.safety.attackers` (the four attackers and their shared context),
:mod:`~audit.safety.anonymise` (anonymise a photo and verify it), :mod:`~audit.safety.peers` (deface measured
with our attackers), :mod:`~audit.safety.recall` (detector recall), :mod:`~audit.safety.obscure` (the obscuring
kinds), :mod:`~audit.safety.gallery` (the attacker's gallery, cached on disk), :mod:`~audit.safety.sweep`
(restorer policy, the sweep, the recommendation rule), :mod:`~audit.safety.figures` (plotly),
:mod:`~audit.safety.dataset` (dataset mode, per-group statistics) and ``__main__`` (command line). Everything
public is re-exported here.

Command line (see ``docs/SAFETY.md``)::

    python -m audit.safety --image examples/generated-0.png --out results/safety_face
    python -m audit.safety --data builtin --n 24 --thorough --out results/safety_example
"""

from audit.safety.anonymise import AnonymiseResult, anonymise, example_group_photo, independent_check, parse_box
from audit.safety.attackers import (
           ATTACKER_NAMES,
           AttackContext,
           Attacker,
           GalleryFaces,
           attack_context,
           builtin_candidates,
           default_attackers,
)
from audit.safety.dataset import DatasetSafety, sweep_dataset
from audit.safety.figures import figure, group_figures
from audit.safety.gallery import (
           DUPLICATE_DISTANCE,
           builtin_gallery,
           gallery_from_faces,
           gallery_from_folder,
           with_query,
)
from audit.safety.obscure import KINDS, NONINVERTIBLE, check_kind, obscure
from audit.safety.sweep import (
           LOWER_BOUND_NOTE,
           SLOW_RESTORERS,
           STRENGTH_LABELS,
           Recommendation,
           SweepResult,
           default_restorers,
           recommend,
           resolve_grid,
           sweep_face,
)

__all__ = ["ATTACKER_NAMES", "AnonymiseResult", "AttackContext", "Attacker", "GalleryFaces", "anonymise",
           "attack_context", "builtin_candidates", "default_attackers", "example_group_photo", "independent_check",
           "parse_box", "DUPLICATE_DISTANCE", "KINDS", "LOWER_BOUND_NOTE", "NONINVERTIBLE",
           "SLOW_RESTORERS", "STRENGTH_LABELS", "DatasetSafety", "Recommendation", "SweepResult", "builtin_gallery",
           "gallery_from_folder",
           "check_kind", "default_restorers", "figure", "gallery_from_faces", "group_figures", "obscure",
           "recommend", "resolve_grid", "sweep_dataset", "sweep_face", "with_query"]
