"""facedrift: Gradio app entry point (`python app.py`, or Hugging Face Spaces' app_file).

Nothing heavy happens at import: `build_app()` builds the Blocks, `main()` launches them.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported: no telemetry

import gradio as gr  # noqa: E402

from deblur import playground  # noqa: E402


def build_app() -> gr.Blocks:
    """The facedrift Blocks app."""
    with gr.Blocks(title="facedrift") as demo:
        gr.Markdown("# facedrift\nDegrade a face, then see what restorers make of it. "
                    "Every output is an **AI reconstruction that may invent detail**, not the real face.")
        with gr.Row():
            photo = gr.Image(label="Photo", type="filepath", sources=["upload", "webcam", "clipboard"])
            degraded = gr.Image(label="Degraded", format="png", interactive=False)
        kind = gr.Radio(list(playground.DEGRADATION_LABELS), value="gaussian", label="Degradation")
        strength = gr.Slider(0, 8, value=3, step=0.5, label="Strength (px)")
        run = gr.Button("Degrade", variant="primary")
        run.click(playground.degrade_upload, [photo, kind, strength], degraded, api_name="degrade")
        gr.Examples([[str(p)] for p in playground.example_photos()], inputs=[photo])
    return demo


def main() -> None:
    build_app().queue(default_concurrency_limit=2).launch()


if __name__ == "__main__":
    main()
