"""Assemble the app from its tabs; one function call per tab, in the order they appear."""

from __future__ import annotations

import gradio as gr

from ui import about, audit_tab, playground, safety_tab, uploads

__all__ = ["CONCURRENCY_LIMIT", "build_app"]

CONCURRENCY_LIMIT = 2  # CPU-bound handlers: more parallel requests only slow each other down


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
