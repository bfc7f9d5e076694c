"""Assemble the app from its tabs; one function call per tab, in the order they appear."""

from __future__ import annotations

import gradio as gr

from ui import about, audit_tab, playground, safety_tab, uploads

__all__ = ["CONCURRENCY_LIMIT", "CSS", "LAUNCH_OPTIONS", "build_app"]

CONCURRENCY_LIMIT = 2  # CPU-bound handlers: more parallel requests only slow each other down
# Page fixes Gradio's defaults do not give: a reconstruction's caption sits above its image instead of floating
# over the top of it, and the 128-px original/degraded crops fill their 256-px panels like the sliders beside them
# (pixels kept sharp, so the browser does not smooth the blur further).
CSS = """
.facedrift-recon label[data-testid="block-label"] { position: relative !important; top: 0 !important;
  left: 0 !important; width: 100%; white-space: normal; border-radius: 0; margin-bottom: 4px; }
.facedrift-panel img { width: 256px !important; height: 256px !important; object-fit: contain;
  image-rendering: pixelated; }
"""
LAUNCH_OPTIONS = {**uploads.LAUNCH_OPTIONS, "css": CSS}  # every launch (app.py, tests, benchmarks) uses these


def build_app() -> gr.Blocks:
    """The facedrift Blocks app (Playground, Audit, Is this blur safe?, About); add a tab as a module with ``tab()``.

    Nothing heavy happens here: restorers, the face detector and the embedder load on the first request.
    """
    with gr.Blocks(title="facedrift", analytics_enabled=False, **uploads.BLOCKS_OPTIONS) as demo:
        gr.Markdown("# facedrift\nFace \u201cdeblurring\u201d models extrapolate; they do not recover a face. "
                    "See what they invent, and audit how unevenly they do it.")
        with gr.Tabs():
            playground.tab()
            audit_tab.tab()
            safety_tab.tab()
            about.tab()
    return demo
