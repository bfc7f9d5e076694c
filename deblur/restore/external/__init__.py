"""External restorers: any Python callable or a running Gradio app / Hugging Face Space, audited like ours.

The spec syntax is in :mod:`deblur.restore.external.spec`; calling, checking outputs, concurrency, rate limits
and retries in :mod:`deblur.restore.external.call`. This module holds the restorer itself (one per spec and
degradation kind, behind the same ``Restorer`` interface as ours, labelled ``external``) and
:func:`restore_outcomes`, the call every engine uses to get one status per image from any restorer. Build
external restorers with :func:`deblur.restore.external_restorers` (the registry, like every restorer).
"""

from __future__ import annotations

from collections.abc import Sequence
from time import perf_counter

import numpy as np

from deblur.degrade import as_image
from deblur.restore.external.call import RestoreFailure, RestoreOutcome, Runner, to_output_image
from deblur.restore.external.spec import EXTERNAL_FAMILY, FAILURE_REASONS, SPEC_HELP, ExternalSpec, parse_external

__all__ = ["EXTERNAL_FAMILY", "FAILURE_REASONS", "SPEC_HELP", "ExternalRestorer", "ExternalSpec", "RestoreFailure",
           "RestoreOutcome", "Runner", "close_restorers", "parse_external", "restore_outcomes", "to_output_image"]


class ExternalRestorer:
    """One external restorer bound to one degradation kind, behind the ``Restorer`` protocol.

    Restorers of the same spec share one :class:`~deblur.restore.external.call.Runner` (connection, thread pool
    bounding the calls in flight, rate limit). :meth:`restore_outcomes` runs a batch concurrently and never
    raises for a failed call; :meth:`restore` / :meth:`restore_batch` raise :class:`RestoreFailure`.
    """

    family = EXTERNAL_FAMILY

    def __init__(self, runner, kind: str):
        self.runner = runner
        self.spec: ExternalSpec = runner.spec
        self.name = self.spec.name
        self.label = self.spec.label
        self.kind = kind
        self.degradations: tuple[str, ...] = (kind,)
        self.uses_strength = self.spec.nonblind

    def __repr__(self) -> str:
        return f"ExternalRestorer({self.spec.text!r}, kind={self.kind!r})"

    def restore_outcomes(self, imgs: Sequence[np.ndarray], strengths: Sequence[float | None] | None = None
                         ) -> list[RestoreOutcome]:
        """Restore each image (concurrently, bounded); a failed call gives an outcome with its status."""
        strengths = list(strengths) if strengths is not None else [None] * len(imgs)
        if len(strengths) != len(imgs):
            raise ValueError(f"got {len(strengths)} strengths for {len(imgs)} images")
        if self.uses_strength and any(s is None for s in strengths):
            raise ValueError(f"{self.name} is declared nonblind: pass the {self.kind} strength")
        return self.runner.run(list(imgs), self.kind, strengths)

    def restore(self, img: np.ndarray, strength: float | None = None) -> np.ndarray:
        return self.restore_batch(np.asarray(img)[None], None if strength is None else [strength])[0]

    def restore_batch(self, imgs: np.ndarray, strengths: Sequence[float] | None = None) -> np.ndarray:
        outcomes = self.restore_outcomes(list(imgs), strengths)
        for o in outcomes:
            if not o.ok:
                raise RestoreFailure(o.status.removeprefix("error:"), o.note)
        return np.stack([o.image for o in outcomes])


def restore_outcomes(restorer, imgs: Sequence[np.ndarray], strengths: Sequence[float | None]) -> list[RestoreOutcome]:
    """Outcomes of any restorer on ``imgs``: its own concurrent path if it has one, else one call each.

    A restorer's exception becomes ``error:<Type>: <message>`` (or ``error:<reason>`` for a
    :class:`RestoreFailure`); an output of the wrong shape becomes ``error:wrong_shape``.
    """
    if hasattr(restorer, "restore_outcomes"):
        return restorer.restore_outcomes(imgs, strengths)
    out = []
    for img, strength in zip(imgs, strengths, strict=True):
        start = perf_counter()
        try:
            restored = as_image(restorer.restore(img, strength), name=f"output of {restorer.name}")
            if restored.shape != np.shape(img):
                raise RestoreFailure("wrong_shape", f"{restorer.name} returned shape {restored.shape}, "
                                                    f"expected {np.shape(img)}")
            out.append(RestoreOutcome(restored, seconds=perf_counter() - start))
        except RestoreFailure as exc:
            out.append(RestoreOutcome(None, exc.status, exc.detail[:300], perf_counter() - start))
        except Exception as exc:  # noqa: BLE001 - one failing restorer must not stop the audit
            out.append(RestoreOutcome(None, f"error:{type(exc).__name__}: {exc}"[:300], "", perf_counter() - start))
    return out


def close_restorers(restorers) -> None:
    """Close the runners of the external restorers in ``{kind: {name: restorer}}`` (threads, temp folders)."""
    runners = {id(r.runner): r.runner for found in restorers.values() for r in found.values()
               if isinstance(r, ExternalRestorer)}
    for runner in runners.values():
        runner.close()
