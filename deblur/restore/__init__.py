"""Restorers: the :class:`Restorer` interface, learned and classical ones, and the one registry that builds them.

- :mod:`deblur.restore.protocol`: :class:`Restorer`, what the app, audit and CLIs rely on.
- :mod:`deblur.restore.registry`: :func:`restorers_for`, :func:`load_restorer`, :func:`restorer_names`; the
  only cache of built restorers (one per process).
- :mod:`deblur.restore.manifest`: the one reader of ``weights/manifest.json`` and the sha256 check every
  learned restorer passes before its weights load.
- :mod:`deblur.restore.learned`: :class:`LearnedRestorer` (checkpoints of :mod:`deblur.train`).
- :mod:`deblur.restore.classical`: Wiener, Richardson–Lucy, bicubic of the block grid, ``none``.
- :mod:`deblur.restore.external`: any Python callable or Gradio app / Space (``NAME=SPEC``), family
  ``external``; :func:`restore_outcomes` gives one status per image from any restorer.

Importing this package does not import torch: :mod:`deblur.restore.learned` loads on first use of one of
its names (a UI builds its layout from :func:`restorer_names` without paying for torch).
"""

from __future__ import annotations

import importlib

from deblur.restore import manifest
from deblur.restore.external import (
    ExternalRestorer,
    RestoreFailure,
    RestoreOutcome,
    close_restorers,
    parse_external,
    restore_outcomes,
)
from deblur.restore.manifest import (
    RETRAIN_HINT,
    WEIGHTS_DIR,
    WeightsError,
    load_manifest,
    offered_models,
    sha256_file,
    verify_weights,
)
from deblur.restore.protocol import Restorer
from deblur.restore.registry import (
    cache_size,
    clear_cache,
    external_restorers,
    load_restorer,
    restorer_names,
    restorers_for,
)

_LEARNED = ("LearnedRestorer", "assemble_input", "load_checkpoint", "pick_device")

__all__ = ["RETRAIN_HINT", "WEIGHTS_DIR", "ExternalRestorer", "LearnedRestorer", "RestoreFailure", "RestoreOutcome",
           "Restorer", "WeightsError", "assemble_input", "cache_size", "clear_cache", "close_restorers",
           "external_restorers", "load_checkpoint", "load_manifest", "load_restorer", "manifest", "offered_models",
           "parse_external", "pick_device", "restore_outcomes", "restorer_names", "restorers_for", "sha256_file",
           "verify_weights"]


def __getattr__(name: str):
    """The torch-backed names of :mod:`deblur.restore.learned`, imported on first access (torch is heavy)."""
    if name in _LEARNED:
        return getattr(importlib.import_module("deblur.restore.learned"), name)
    raise AttributeError(f"module 'deblur.restore' has no attribute {name!r}")
