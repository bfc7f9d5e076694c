"""Shared fixtures. Tests run on CPU; generated data goes to a per-session cache folder."""

from __future__ import annotations

import contextlib
import os
import time

import numpy as np
import pytest

from bench.server import free_port

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


@pytest.fixture(scope="session")
def app_server(tmp_path_factory):
    """The full app, launched once per test session on a free port with its own GRADIO_TEMP_DIR.

    Yields ``(url, demo)``. Server, browser and safety tests share it; a test that needs a handler pointed
    elsewhere monkeypatches the handler module (the server runs in this process).
    """
    with launched_app(tmp_path_factory.mktemp("gradio"), show_error=True) as served:
        yield served


@contextlib.contextmanager
def launched_app(gradio_tmp, show_error: bool):
    """The full app launched in this process (so monkeypatching reaches its handlers) on a free port, with its
    own ``GRADIO_TEMP_DIR``; yields ``(url, demo)`` and closes it after."""
    old = os.environ.get("GRADIO_TEMP_DIR")
    os.environ["GRADIO_TEMP_DIR"] = str(gradio_tmp)
    import app

    demo = app.build_app()
    port = free_port()
    demo.queue(default_concurrency_limit=app.CONCURRENCY_LIMIT).launch(
        prevent_thread_lock=True, server_port=port, quiet=True, show_error=show_error, **app.LAUNCH_OPTIONS)
    try:
        yield f"http://127.0.0.1:{port}/", demo
    finally:
        demo.close()
        if old is None:
            os.environ.pop("GRADIO_TEMP_DIR", None)
        else:
            os.environ["GRADIO_TEMP_DIR"] = old


@pytest.fixture(scope="session")
def restorer_app():
    """A small real Gradio app on localhost serving restorers: an image-to-image Interface (``/predict``, a
    mirror image), a non-blind one and endpoints that misbehave. Yields ``(url, calls seen)``."""
    import gradio as gr

    seen = []

    def predict(img):
        seen.append(("predict", img.shape))
        return np.ascontiguousarray(img[:, ::-1])  # mirrored: a real, measurable change

    def nonblind(img, kind, strength):
        seen.append(("nonblind", kind, strength))
        return img

    def boom(img):
        raise gr.Error("out of GPU quota")

    def slow(img):
        time.sleep(3)
        return img

    def text(img):
        return "done"

    def image_in():
        return gr.Image(type="numpy")

    def image_out():
        return gr.Image(type="numpy", format="png")

    demo = gr.TabbedInterface([
        gr.Interface(predict, image_in(), image_out(), api_name="predict"),
        gr.Interface(nonblind, [image_in(), gr.Textbox(), gr.Number()], image_out(), api_name="nonblind"),
        gr.Interface(boom, image_in(), image_out(), api_name="boom"),
        gr.Interface(slow, image_in(), image_out(), api_name="slow"),
        gr.Interface(text, image_in(), gr.Textbox(), api_name="text"),
    ])
    port = free_port()
    demo.queue(default_concurrency_limit=4).launch(prevent_thread_lock=True, server_port=port, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/", seen
    finally:
        demo.close()
