"""The one way to get restorers, and the one process-wide cache of them.

:func:`restorers_for` gives every restorer of a degradation (the learned models ``weights/manifest.json``
offers, the classical baselines, ``"none"``); :func:`load_restorer` one by name or checkpoint path;
:func:`restorer_names` the names without loading anything (to lay out a UI). Each restorer is built once per
process and shared by every caller (the app's tabs, the audit, the safety sweep, the evaluation CLI), so a
weights file is read, verified against the manifest and loaded once. A file changed on disk (size or
modification time) is verified and loaded again under a new key.

Importing this module does not import torch (see :func:`_learned`), so a UI can list restorers at build time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from deblur.restore.classical import classical_restorers
from deblur.restore.external import ExternalRestorer, ExternalSpec, Runner, parse_external
from deblur.restore.manifest import WEIGHTS_DIR, load_manifest, offered_models
from deblur.restore.protocol import Restorer
from deblur.strengths import STRENGTHS

__all__ = ["cache_size", "clear_cache", "external_restorers", "load_restorer", "restorer_names", "restorers_for"]

_cache: dict[tuple, Restorer] = {}
_lock = threading.RLock()  # the app serves concurrent requests: two must not load the same weights twice


def _cached(key: tuple, build: Callable[[], Restorer]) -> Restorer:
    with _lock:
        if key not in _cache:
            _cache[key] = build()
        return _cache[key]


def cache_size() -> int:
    """Restorers built so far in this process (0 right after import: building the app loads none)."""
    return len(_cache)


def clear_cache() -> None:
    """Forget every built restorer (tests; a long-lived process that wants memory back)."""
    with _lock:
        _cache.clear()


def _learned(path: Path, device, name: str | None = None, label: str | None = None) -> Restorer:
    # torch loads here, on the first learned restorer, not at import: building the app must stay light
    from deblur.restore.learned import LearnedRestorer, pick_device

    path = Path(path).resolve()
    stat = path.stat() if path.is_file() else None  # a missing file: LearnedRestorer names it
    signature = (stat.st_size, stat.st_mtime_ns) if stat else None
    key = ("learned", str(path), signature, str(pick_device(device)), name, label)
    return _cached(key, lambda: LearnedRestorer(path, device=device, name=name, label=label))


def _classical(degradation: str) -> dict[str, Restorer]:
    return {name: _cached(("classical", degradation, name), lambda r=r: r)
            for name, r in classical_restorers(degradation).items()}


def _check_degradation(degradation: str) -> None:
    if degradation not in STRENGTHS:
        raise ValueError(f"unknown degradation {degradation!r}; choose one of {sorted(STRENGTHS)}")


def restorers_for(degradation: str, weights_dir: str | Path = WEIGHTS_DIR, device=None,
                  include_unoffered: bool = False) -> dict[str, Restorer]:
    """Every shipped learned model for ``degradation``, its classical baselines and ``"none"``, by name.

    Args:
        degradation: ``"gaussian"``, ``"pixelate"`` or ``"motion"``.
        weights_dir: folder holding ``manifest.json`` and the weights files.
        device: torch device for the learned models (default CUDA when available).
        include_unoffered: also return shipped models whose manifest entry has ``offer: false`` (they do
            not beat the degraded input on average; kept to reproduce the study).

    Raises:
        ValueError: unknown degradation, or a weights file that is corrupt or differs from the manifest.
        FileNotFoundError: a weights file the manifest lists is missing.
    """
    _check_degradation(degradation)
    weights_dir = Path(weights_dir)
    out: dict[str, Restorer] = {}
    for name, entry in offered_models(weights_dir, degradation, include_unoffered).items():
        out[name] = _learned(weights_dir / entry["file"], device, name, entry.get("label"))
    for name, r in _classical(degradation).items():
        out.setdefault(name, r)
    return out


def external_restorers(specs: Sequence[str | ExternalSpec], kinds: Sequence[str], *, concurrency: int | None = None,
                       timeout: float | None = None) -> dict[str, dict[str, ExternalRestorer]]:
    """``{kind: {name: restorer}}`` for external restorer specs (:mod:`deblur.restore.external`).

    Each spec is imported / connected now (a bad one fails before any work starts) and cached like every
    restorer: the restorers of one spec share one runner (thread pool, rate limit) across kinds and callers.
    :func:`deblur.restore.external.close_restorers` releases a runner's threads and connection; its next call
    reconnects.

    Raises:
        ValueError: a bad spec, two specs with one name, an unimportable callable or an unreachable app.
    """
    out: dict[str, dict[str, ExternalRestorer]] = {kind: {} for kind in kinds}
    seen: set[str] = set()
    for item in specs:
        spec = item if isinstance(item, ExternalSpec) else parse_external(item, concurrency=concurrency,
                                                                          timeout=timeout)
        if spec.name in seen:
            raise ValueError(f"two external restorers are called {spec.name!r}; give each its own NAME=")
        seen.add(spec.name)
        runner = _cached(("external", spec), lambda spec=spec: Runner(spec))
        runner.connect()  # import the callable / connect now: a bad spec fails before the audit starts
        for kind in kinds:
            if kind in spec.kinds:
                out[kind][spec.name] = _cached(("external", spec, kind),
                                               lambda runner=runner, kind=kind: ExternalRestorer(runner, kind))
    return out


def restorer_names(degradation: str | None = None, weights_dir: str | Path = WEIGHTS_DIR,
                   include_unoffered: bool = False) -> list[str]:
    """Names :func:`restorers_for` would return (for one degradation, or all), without loading any model."""
    if degradation is not None:
        _check_degradation(degradation)
    names = list(offered_models(weights_dir, degradation, include_unoffered))  # learned first, manifest order
    for kind in STRENGTHS if degradation is None else [degradation]:
        names += [n for n in classical_restorers(kind) if n not in names]
    return names


def load_restorer(name_or_path: str | Path, device=None, weights_dir: str | Path = WEIGHTS_DIR) -> Restorer:
    """A restorer by manifest name (``"resunet-gaussian"``), classical name (``"wiener"``) or checkpoint path.

    Raises:
        ValueError: an unknown name (lists the known ones), or a corrupt or tampered weights file.
    """
    weights_dir = Path(weights_dir)
    models = load_manifest(weights_dir).get("models", {})
    key = str(name_or_path)
    if key in models:
        return _learned(weights_dir / models[key]["file"], device, key, models[key].get("label"))
    path = Path(name_or_path)
    if path.suffix == ".pt" or path.exists():
        return _learned(path, device)
    for kind in STRENGTHS:
        found = _classical(kind)
        if key in found:
            return found[key]
    raise ValueError(f"unknown restorer {name_or_path!r}; shipped models: {sorted(models)}; or pass a .pt path "
                     "or a classical name (wiener, richardson-lucy, bicubic, none)")
