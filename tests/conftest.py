"""Shared fixtures. Tests run on CPU; generated data goes to a per-session cache folder."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")



@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut().astype(np.float32) / 255.0


@pytest.fixture(scope="session")
def small_faces(tmp_path_factory):
    """64 built-in faces, generated into a per-session cache."""
    from deblur import data

    old = os.environ.get("FACEDRIFT_CACHE")
    os.environ["FACEDRIFT_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    try:
        return data.builtin_faces(n=64, seed=0)
    finally:
        if old is None:
            os.environ.pop("FACEDRIFT_CACHE")
        else:
            os.environ["FACEDRIFT_CACHE"] = old


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
