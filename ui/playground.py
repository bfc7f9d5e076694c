"""The Playground tab: degrade a face (or take an already degraded one) and compare every restorer.

Layout and handlers together; the work is :func:`deblur.playground.restore_and_measure` (no gradio).
"""

from __future__ import annotations

import functools
from pathlib import Path

import gradio as gr
import numpy as np

from deblur import playground
from deblur.degrade import to_uint8
from deblur.playground import METRIC_COLUMNS, MODES, SOURCES, PlaygroundResult
from deblur.restore import WEIGHTS_DIR, restorer_names
from deblur.strengths import STRENGTHS
from ui import uploads
from ui.common import DEGRADATION_LABELS, EXTERNAL_HELP, ON_SPACES, example_photos, external_specs, gpu
from ui.errors import user_errors

__all__ = ["CAPTION", "MAX_SLOTS", "outputs_for_ui", "playground_request", "reconstruction_slots", "run_playground",
           "slot_count", "strength_slider", "tab"]

MAX_SLOTS = 12  # upper bound on reconstruction panels the tab lays out; the table always lists every restorer
CAPTION = "AI reconstruction — may invent detail; not the real face"


def slot_count(weights_dir: Path = WEIGHTS_DIR) -> int:
    """Reconstruction panels to lay out: the most restorers (except ``"none"``) any degradation has.

    Reads only the weights manifest and the classical table, so building the app loads no model.
    """
    counts = [sum(1 for name in restorer_names(kind, weights_dir) if name != "none") for kind in STRENGTHS]
    return max(1, min(MAX_SLOTS, max(counts)))


@functools.lru_cache(maxsize=1)
def reconstruction_slots() -> int:
    """Number of reconstruction panels, fixed for the life of the process (layout and handler must agree).

    One more than our restorers need when running locally, for an external restorer.
    """
    return min(MAX_SLOTS, slot_count() + (0 if ON_SPACES else 1))


def strength_slider(kind: str, source: str = "clean") -> dict:
    """Slider settings (range, step, default, label) for degradation ``kind``, as a ``gr.update`` dict.

    Args:
        kind: ``"gaussian"``, ``"pixelate"`` or ``"motion"``.
        source: ``"clean"`` (we degrade) or ``"degraded"`` (the value is the user's guess).
    """
    if kind not in STRENGTHS:
        raise gr.Error(f"Unknown degradation {kind!r}; choose one of {', '.join(STRENGTHS)}.")
    spec = STRENGTHS[kind]
    what = "your guess of the " if source == "degraded" else ""
    label = f"Strength: {what}{spec.name}, in pixels of the processed image"
    if source == "degraded":
        label += " (used only when 'Estimate' is unticked)"
    return gr.update(minimum=spec.low, maximum=spec.high, step=spec.step, value=spec.default, label=label)


@user_errors
def run_playground(photo: str | np.ndarray | None, mode: str, source: str, kind: str,
                   strength: float, face: int = 1, estimate: bool = True,
                   external: str | None = None) -> PlaygroundResult:
    """One playground request: settings checked first, then the photo read, cut and measured.

    Args:
        photo: the photo already read (``HxWx3`` float32, as the Run handler passes it) or a file.
        face: which face of a group photo, 1 = the largest.
        estimate: for an already degraded photo, estimate the kind and strength from it
            (:func:`deblur.playground.estimate_degradation`) instead of using ``kind`` and ``strength``.
        external: the tab's external restorer field (Gradio app URLs / Space ids, local runs only).

    Raises:
        gr.Error: bad settings, no or unreadable photo, no face in face-crop mode, weights that cannot load.
    """
    playground.check_request(source, kind, strength)
    specs = external_specs(external)
    image = uploads.read_photo(photo)
    prepared = playground.prepare(image, mode, face=face)
    said = ""
    if source == "degraded" and estimate:
        reading = playground.estimate_degradation(image, prepared, mode)
        kind, strength = reading.processed.kind, reading.processed.for_restorer()
        said = reading.text("the 128-px face crop" if mode == "face" else "the processed image")
    result = playground.restore_and_measure(prepared, mode, source, kind, strength, external=specs)
    if said:
        result.reading = f"{said}\n\n{result.reading}"
    return result


def outputs_for_ui(result: PlaygroundResult, slots: int) -> list:
    """Flatten a result into the tab's outputs: original, degraded, ``slots`` sliders, table, reading."""
    degraded8 = to_uint8(result.degraded)
    # "none" is the degraded image itself; a failed external call has no image (the table says why)
    shown = [rec for rec in result.reconstructions if rec.name != "none" and rec.image is not None]
    sliders = []
    for i in range(slots):
        if i < len(shown):
            rec = shown[i]
            sliders.append(gr.update(value=(degraded8, to_uint8(rec.image)), visible=True,
                                     label=f"{rec.label}: {CAPTION}"))
        else:
            sliders.append(gr.update(value=None, visible=False))
    reading = result.reading
    if len(shown) > slots:
        reading += f"\n\nOnly the first {slots} reconstructions are shown as images; the table lists all."
    original = None if result.original is None else to_uint8(result.original)
    return [original, degraded8, *sliders, result.table, reading]


@gpu
@user_errors
def playground_request(path: str | None, mode: str, source: str, kind: str, strength: float, face: float = 1,
                       estimate: bool = True, kept: dict | None = None, external: str | None = None) -> list:
    """The Run button: one request, flattened into the tab's output components.

    The upload is read and deleted first (:func:`ui.uploads.take_photo`); ``kept`` is the tab's memory of it.
    """
    image, kept = uploads.take_photo(path, kept)
    result = run_playground(image, mode, source, kind, strength, int(face), estimate, external)
    return [*outputs_for_ui(result, reconstruction_slots()), kept]


def tab() -> None:
    """Lay out the Playground tab and wire its events (inside a ``gr.Blocks``)."""
    spec = STRENGTHS["gaussian"]
    with gr.Tab("Playground", id="playground"):
        gr.Markdown(
            "Degrade a face, then see what each restorer makes of it. Every output is an **AI reconstruction "
            "that may invent detail, not the real face**. Drag the slider on each result to compare it with "
            "the degraded input."
        )
        with gr.Row():
            with gr.Column(scale=1):
                photo = uploads.photo_input(label="Photo", sources=["upload", "webcam", "clipboard"], height=260)
                gr.Examples([[str(p)] for p in example_photos()], inputs=[photo], label="Example photos")
            with gr.Column(scale=1):
                source = gr.Radio([(v, k) for k, v in SOURCES.items()], value="clean", label="Input")
                mode = gr.Radio([(v, k) for k, v in MODES.items()], value="face", label="What to process")
                kind = gr.Radio([(v, k) for k, v in DEGRADATION_LABELS.items()], value="gaussian",
                                label="Degradation")
                strength = gr.Slider(spec.low, spec.high, value=spec.default, step=spec.step,
                                     label=f"Strength: {spec.name}, in pixels of the processed image")
                # The slider's range follows the degradation in the page; the API takes any kind's range without
                # calling /strength_range first, and run_playground checks the value against the chosen kind.
                strength.preprocess = float
                face = gr.Number(1, precision=0, minimum=1, label="Face # (group photos: 1 = the largest)")
                estimate = gr.Checkbox(value=True, label="Estimate the degradation and its strength from my photo "
                                       "(already blurred input only; untick to choose them yourself)")
                kept = uploads.kept_photo()
                with gr.Accordion("External restorer (local runs only)", open=False, visible=not ON_SPACES):
                    external = gr.Textbox(value="", label="Gradio app URL or Space id", info=EXTERNAL_HELP, lines=1,
                                          placeholder="http://127.0.0.1:7860/#/predict")
                run = gr.Button("Run", variant="primary")
        with gr.Row():
            original = gr.Image(label="Original (processed)", format="png", interactive=False, height=300,
                                elem_classes=["facedrift-panel"])
            degraded = gr.Image(label="Degraded input the restorers see", format="png", interactive=False,
                                height=300, elem_classes=["facedrift-panel"])
        gr.Markdown(f"### Reconstructions\n*{CAPTION}.* Left: degraded input; right: reconstruction.")
        sliders = []
        slots = reconstruction_slots()
        for row_start in range(0, slots, 4):
            with gr.Row():
                for _ in range(row_start, min(row_start + 4, slots)):
                    sliders.append(gr.ImageSlider(format="png", visible=False, interactive=False, max_height=256,
                                                  label=CAPTION, elem_classes=["facedrift-recon"]))
        table = gr.Dataframe(headers=METRIC_COLUMNS, max_height=1200,  # every row, none cut off
                             label="Metrics (PSNR/SSIM vs the original; identity = dlib embedding distance)",
                             interactive=False, wrap=True,
                             column_widths=["14%", "8%", "7%", "6%", "6%", "7%", "7%", "9%", "6%", "30%"])
        reading = gr.Markdown()

        kind.change(strength_slider, [kind, source], strength, api_name="strength_range")
        source.change(strength_slider, [kind, source], strength, api_name=False)
        run.click(playground_request, [photo, mode, source, kind, strength, face, estimate, kept, external],
                  [original, degraded, *sliders, table, reading, kept], api_name="playground")
