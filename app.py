"""facedrift: Gradio app entry point (`python app.py`, or Hugging Face Spaces' app_file).

Nothing heavy happens at import: `build_app()` builds the Blocks (one function per tab), `main()` launches
them. Restorers, the face detector and the embedder load on the first request that needs them.
"""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported: no telemetry

import gradio as gr  # noqa: E402

from deblur import degrade as D  # noqa: E402
from deblur import playground  # noqa: E402
from ui import uploads  # noqa: E402
from ui.errors import user_errors  # noqa: E402
from ui.uploads import photo_input  # noqa: E402

try:  # ZeroGPU on Hugging Face Spaces: the decorator borrows a GPU per call; a no-op everywhere else
    import spaces

    gpu = spaces.GPU
except ImportError:  # pragma: no cover - depends on the host

    def gpu(fn):
        """No-op stand-in for ``spaces.GPU`` when the ``spaces`` package is absent."""
        return fn


CONCURRENCY_LIMIT = 2  # CPU-bound handlers: more parallel requests only slow each other down
# An audit request runs the audit engine on its share of the cores (1: in the server process, as on 2 cores).
AUDIT_WORKERS = max(1, (os.cpu_count() or 1) // CONCURRENCY_LIMIT)
ON_SPACES = bool(os.environ.get("SPACE_ID"))


@functools.lru_cache(maxsize=1)
def reconstruction_slots() -> int:
    """Number of reconstruction panels, fixed for the life of the process (layout and handler must agree)."""
    return playground.slot_count()


@gpu
@user_errors
def playground_request(path: str | None, mode: str, source: str, kind: str, strength: float,
                       kept: dict | None = None) -> list:
    """The playground's Run handler: one request, flattened into the tab's output components.

    The upload is read and deleted first (:func:`ui.uploads.take_photo`); ``kept`` is the tab's memory of it.
    """
    image, kept = uploads.take_photo(path, kept)
    result = playground.run_playground(image, mode, source, kind, strength)
    return [*playground.outputs_for_ui(result, reconstruction_slots()), kept]


def playground_tab() -> None:
    """Playground: degrade a face (or take an already degraded one) and compare every restorer."""
    spec = D.STRENGTHS["gaussian"]
    with gr.Tab("Playground", id="playground"):
        gr.Markdown(
            "Degrade a face, then see what each restorer makes of it. Every output is an **AI reconstruction "
            "that may invent detail, not the real face**. Drag the slider on each result to compare it with "
            "the degraded input."
        )
        with gr.Row():
            with gr.Column(scale=1):
                photo = photo_input(label="Photo", sources=["upload", "webcam", "clipboard"], height=260)
                gr.Examples([[str(p)] for p in playground.example_photos()], inputs=[photo], label="Example photos")
            with gr.Column(scale=1):
                source = gr.Radio([(v, k) for k, v in playground.SOURCES.items()], value="clean", label="Input")
                mode = gr.Radio([(v, k) for k, v in playground.MODES.items()], value="face", label="What to process")
                kind = gr.Radio([(v, k) for k, v in playground.DEGRADATION_LABELS.items()], value="gaussian",
                                label="Degradation")
                strength = gr.Slider(spec.low, spec.high, value=spec.default, step=spec.step,
                                     label=f"Strength: {spec.name}, in pixels of the processed image")
                # The slider's range follows the degradation in the page; the API takes any kind's range without
                # calling /strength_range first, and run_playground checks the value against the chosen kind.
                strength.preprocess = float
                kept = uploads.kept_photo()
                run = gr.Button("Run", variant="primary")
        with gr.Row():
            original = gr.Image(label="Original (processed)", format="png", interactive=False, height=256)
            degraded = gr.Image(label="Degraded input the restorers see", format="png", interactive=False,
                                height=256)
        gr.Markdown(f"### Reconstructions\n*{playground.CAPTION}.* Left: degraded input; right: reconstruction.")
        sliders = []
        slots = reconstruction_slots()
        for row_start in range(0, slots, 4):
            with gr.Row():
                for _ in range(row_start, min(row_start + 4, slots)):
                    sliders.append(gr.ImageSlider(format="png", visible=False, interactive=False, max_height=256,
                                                  label=playground.CAPTION))
        table = gr.Dataframe(label="Metrics (PSNR/SSIM vs the original; identity = dlib embedding distance)",
                             interactive=False, wrap=True,
                             column_widths=["16%", "7%", "7%", "6%", "6%", "7%", "7%", "6%", "38%"])
        reading = gr.Markdown()

        kind.change(playground.strength_slider, [kind, source], strength, api_name="strength_range")
        source.change(playground.strength_slider, [kind, source], strength, api_name=False)
        run.click(playground_request, [photo, mode, source, kind, strength, kept],
                  [original, degraded, *sliders, table, reading, kept], api_name="playground")


@gpu
@user_errors
def audit_request(models: list[str], kinds: list[str], strengths: str, n: float, seed: float, embedder: str,
                  data_zip: str | None, labels_csv: str | None, dataset: str = "builtin",
                  progress: gr.Progress = gr.Progress()) -> list:  # noqa: B008 - Gradio injects progress via the default
    """The audit tab's Run handler: the engine of ``python -m audit``, with live progress."""
    from audit import app_handlers

    def report(stage: str, done: int, total: int) -> None:
        progress((done, total), desc=app_handlers.STAGES.get(stage, stage), unit="faces")

    # Uploads are read into memory and deleted before any work; the report is written into a temporary folder
    # that is deleted as soon as its files are published into Gradio's cache (which expires them).
    zip_bytes = uploads.consume(data_zip) if data_zip else None
    csv_bytes = uploads.consume(labels_csv) if labels_csv else None
    with tempfile.TemporaryDirectory(prefix="facedrift-audit-") as work:
        run = app_handlers.run_audit_request(models, kinds, strengths, int(n), int(seed), embedder, zip_bytes,
                                             csv_bytes, dataset=dataset, allow_upload=not ON_SPACES, progress=report,
                                             work=Path(work), zip_name=Path(data_zip).name if data_zip else None,
                                             workers=AUDIT_WORKERS)
        return app_handlers.outputs_for_ui(run, publish=uploads.publish)


def audit_tab() -> None:
    """Audit: run the identity-drift audit on the built-in faces (or, locally, your own labelled set)."""
    from audit import app_handlers

    with gr.Tab("Audit", id="audit"):
        gr.Markdown(
            "Measure how much each restorer changes **who** a face is, per group of people. Same engine as "
            "`python -m audit`. The built-in faces are synthetic and their groups are *predicted*; keep the sample "
            "small here (about 1 s per face and setting on a CPU) and use the command line for full runs."
        )
        with gr.Row():
            with gr.Column():
                models = gr.CheckboxGroup(app_handlers.model_choices(), label="Restorers (none ticked = all)")
                kinds = gr.CheckboxGroup([(v, k) for k, v in playground.DEGRADATION_LABELS.items()],
                                         value=["gaussian"], label="Degradations")
                strengths = gr.Textbox(value=app_handlers.DEFAULT_STRENGTHS, label="Strengths (px of the 128-px crop)",
                                       info="kind=a,b per degradation; bare numbers apply to all")
            with gr.Column():
                n = gr.Slider(2, 400, value=24, step=1, label="Sample size (faces)")
                seed = gr.Number(value=0, precision=0, label="Seed")
                embedder = gr.Dropdown(["dlib", "facenet"], value="dlib", label="Identity embedder",
                                       info="facenet needs its VGGFace2 weights (not bundled)")
                dataset = gr.Radio([(v, k) for k, v in app_handlers.DATASETS.items()], value="builtin",
                                   label="Faces", info=app_handlers.FAIRFACE_CREDIT)
                with gr.Accordion("Your own data (local runs only)", open=False, visible=not ON_SPACES):
                    gr.Markdown("A zip of face images plus a labels CSV (`path` relative to the zip, then group "
                                "columns). Extracted to a temporary folder and deleted after the run.")
                    data_zip = gr.File(label="Images (.zip)", file_types=[".zip"], type="filepath")
                    labels_csv = gr.File(label="Labels (.csv)", file_types=[".csv"], type="filepath")
        run = gr.Button("Run audit", variant="primary")
        status = gr.Markdown()
        table = gr.Dataframe(label="Per-group results (groups.csv, main columns)", interactive=False, wrap=True)
        with gr.Row():
            download = gr.DownloadButton("Download group report (CSV)", visible=False)
            files = gr.File(label="All report files", file_count="multiple", interactive=False)
        plots = [gr.Plot(visible=False) for _ in range(app_handlers.MAX_FIGURES)]
        run.click(audit_request, [models, kinds, strengths, n, seed, embedder, data_zip, labels_csv, dataset],
                  [status, table, download, files, *plots], api_name="audit")


ABOUT = """
## What these models are

They are **detail extrapolators, not deblurrers**. A blurred or pixelated face has lost information; a
learned model fills the gap with what faces in its training set usually look like. Its output is a function
of the input *and* of the thousands of faces it was trained on, so it can look sharp and still be someone
else. The classical baselines (Wiener, Richardson–Lucy, bicubic of the block grid) invent nothing: they are
*told* the exact blur or block size and invert it, and on lightly degraded faces that works disturbingly
well.

## Why this matters (after the study *From Fuzzy to Funny*, section V)

- **Privacy and re-identification.** Blurring or pixelating a face is not anonymisation. When the blur is
  known, it can often be inverted well enough for a face recogniser to match the person, which enables
  surveillance or stalking of people who believed they were hidden. Never use this app on photos of people
  who have not agreed to it.
- **Misleading naming.** Calling these models "deblurring" suggests they reveal the hidden face. They make an
  educated guess. A reconstruction must never be treated as evidence of who is in a photo — least of all by
  the police.
- **Demographic bias.** Training data is skewed (CelebA is about 90% white faces), so the guesses are skewed.
  PULSE, a face "depixelator", turned a pixelated Barack Obama and a pixelated Michelle Yeoh into white,
  vaguely masculine faces. The Audit tab measures how unevenly identity drifts across groups.

## Data limits

- The built-in faces are **synthetic**: a DCGAN (gan-face-generate, trained on DigiFace-1M) made them, 64 px
  native, upscaled to 128 px. They are smooth and of nobody; results on them are weak evidence about real
  people.
- Groups in the audit are **predicted** (age and gender by a model, skin tone as ITA° bins that mostly measure
  lighting), never ground truth. Small groups get wide intervals.
- Identity distance uses the dlib face embedding. Its usual 0.6 "same person" threshold is calibrated on real
  photos; on generated faces it is too lenient, so the audit calibrates its own.

## Privacy of this app

Uploads are processed in memory for one request and not kept; outputs are written to per-request temporary
files only so your browser can display and download them. No analytics are sent.

## Licences and credits

- Example photos: see `examples/SOURCES.md` (NASA astronaut portrait, public domain; generated faces).
- Face generator: gan-face-generate 1.1.1, MIT licence, © 2023 chien liu.
- Face detection: MTCNN weights from facenet-pytorch (MIT); OpenCV Haar cascade. Identity: dlib ResNet
  embedding (face-recognition-models, CC0).
- facedrift itself: MIT licence.
"""

CARDS_DIR = Path(__file__).resolve().parent / "weights" / "cards"


def model_cards(cards_dir: Path = CARDS_DIR) -> list[tuple[str, str]]:
    """``(title, markdown)`` of every model card in ``weights/cards/``, sorted by file name."""
    cards = []
    for path in sorted(cards_dir.glob("*.md")):
        text = path.read_text(encoding="utf-8")
        first = next((line.lstrip("# ").strip() for line in text.splitlines() if line.strip()), path.stem)
        cards.append((first or path.stem, text))
    return cards


def about_tab() -> None:
    """About: what the models are, the study's ethics points, model cards, data limits, credits."""
    with gr.Tab("About", id="about"):
        gr.Markdown(ABOUT)
        cards = model_cards()
        gr.Markdown("## Model cards" if cards else "## Model cards\nNo trained model is shipped in this copy.")
        for title, text in cards:
            with gr.Accordion(f"Model card: {title}", open=False):
                gr.Markdown(text)


@user_errors
def safety_request(path: str | None, margin: float, kept: dict | None = None,
                   progress: gr.Progress = gr.Progress()) -> list:  # noqa: B008 - Gradio injects progress via the default
    """The safety tab's Run handler: read and delete the upload, sweep it, publish the obscured faces."""
    from audit import safety_handlers

    image, kept = uploads.take_photo(path, kept)
    outputs = safety_handlers.safety_outputs(image, margin, uploads.publish_bytes,
                                             progress=lambda f, msg: progress(f, desc=msg))
    return [*outputs, kept]


def build_app() -> gr.Blocks:
    """The facedrift Blocks app: one function per tab (Playground, Audit, About); add new tabs the same way."""
    from audit.safety_handlers import safety_tab

    with gr.Blocks(title="facedrift", analytics_enabled=False, **uploads.BLOCKS_OPTIONS) as demo:
        gr.Markdown("# facedrift\nFace \u201cdeblurring\u201d models extrapolate; they do not recover a face. "
                    "See what they invent, and audit how unevenly they do it.")
        with gr.Tabs():
            playground_tab()
            audit_tab()
            safety_tab(safety_request, photo_input, uploads.kept_photo)
            about_tab()
    return demo


def main() -> None:
    """Launch the app with a bounded queue (CPU-bound handlers), one share of the cores per request."""
    import torch

    # Oversubscribed OpenMP threads make small CPU convolutions (MTCNN on a photo) 50x slower; measured in
    # bench/bench_playground.py. Each of the concurrent requests gets its share of the cores instead.
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // CONCURRENCY_LIMIT))
    build_app().queue(default_concurrency_limit=CONCURRENCY_LIMIT, max_size=32).launch(**uploads.LAUNCH_OPTIONS)


if __name__ == "__main__":
    main()
