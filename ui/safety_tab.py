"""The "Is this blur safe?" tab: layout and handlers over :func:`audit.safety.sweep_face`.

The Run handler reads and deletes the upload (:func:`ui.uploads.take_photo`), cuts the aligned 128-px face crop
with the playground's :func:`deblur.playground.prepare`, sweeps every obscuring kind, and returns one plotly
figure per kind, the recommendation table, and the obscured faces as metadata-free PNGs published into
Gradio's cache (which expires them).
"""

from __future__ import annotations

from collections.abc import Callable

import gradio as gr
import numpy as np
import pandas as pd

from audit import safety
from deblur.playground import embedder, prepare
from ui import uploads
from ui.common import example_photos
from ui.errors import user_errors
from ui.uploads import read_photo

__all__ = ["ANON_KINDS", "PLOT_KINDS", "REPORT_COLUMNS", "TABLE_COLUMNS", "anonymise_outputs", "anonymise_request",
           "parse_boxes", "run_safety", "safety_outputs", "safety_request", "tab"]

PLOT_KINDS = tuple(k for k in safety.KINDS if k != "fill")  # fill has no strength axis: table + image only
TABLE_COLUMNS = ["degradation", "recommended", "in your photo (px)", "first safe", "tested up to", "closest restorer",
                 "explanation"]
ANON_KINDS = {"Pixelation + noise (recommended)": "pixelate_noise", "Pixelation": "pixelate",
              "Gaussian blur": "gaussian", "Solid fill (black)": "fill"}
REPORT_COLUMNS = ["face", "found by", "box (x0, y0, x1, y1)", "obscured with", "strength (crop px)",
                  "in your photo (px)", "verdict", "closest attacker (distance / threshold)"]
KIND_LABELS = {"gaussian": "Gaussian blur", "pixelate": "Pixelation", "motion": "Motion blur",
               "fill": "Solid fill (mean colour)", "pixelate_noise": "Pixelation + noise"}


def _photo_scale(prepared) -> float:
    """Crop pixels per photo pixel (1 when the upload already was the crop)."""
    if prepared.where is None:
        return 1.0
    return float(np.hypot(*prepared.where.matrix[0, :2]))


@user_errors
def run_safety(photo: str | np.ndarray | None, margin: float = 0.0,
               progress: Callable[[float, str], None] | None = None,
               face: int = 1) -> tuple[safety.SweepResult, float, str]:
    """Read a photo (a file, or the image already read), cut its face the playground's way and sweep it.

    Returns:
        The sweep, the crop's scale (crop pixels per photo pixel) and which face was used.

    Raises:
        gr.Error: no upload, unreadable file, no face, or a bad margin.
    """
    # the tab has no whole-image mode
    prepared = prepare(read_photo(photo), "face", whole_image_hint=False, face=face)
    # An upload is a real photo: a gallery of generated faces cannot judge it (it is always nearest its own
    # original there), so the verdict is the identity model's published threshold alone.
    result = safety.sweep_face(prepared.image, gallery=None, embedder=embedder(), margin=float(margin),
                               require_face=False, progress=progress)
    return result, _photo_scale(prepared), prepared.note


def recommendation_table(result: safety.SweepResult, scale: float = 1.0) -> pd.DataFrame:
    """The tab's table: one row per kind, with the strength converted to pixels of the uploaded photo."""
    rows = []
    for kind, rec in result.recommendations.items():
        in_photo = None
        if rec.strength is not None and kind != "fill":
            in_photo = round(rec.strength / scale, 1)
        rows.append({"degradation": kind, "recommended": rec.strength, "in your photo (px)": in_photo,
                     "first safe": rec.first_safe, "tested up to": rec.tested_max if kind != "fill" else None,
                     "closest restorer": rec.holdout, "explanation": rec.explanation})
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def reading(result: safety.SweepResult, which_face: str = "") -> str:
    """Plain-words summary plus the lower-bound warning."""
    recs = result.recommendations
    unsafe = [KIND_LABELS[k] for k, r in recs.items() if r.strength is None]
    safe = [f"{KIND_LABELS[k]} from {r.strength:g} px" for k, r in recs.items()
            if r.strength is not None and k != "fill"]
    lines = [which_face] if which_face else []
    lines.append(f"**Threshold** {result.threshold.distance:.2f} ({result.embedder} L2; {result.threshold.source}) "
                 f"+ margin {result.margin:.2f}. {result.settings.get('gallery', '').capitalize()}. "
                 f"Sweep: {result.seconds:.1f} s, {result.n_embeddings} embeddings.")
    if safe:
        lines.append("Safe against *our* attackers: " + "; ".join(safe) + " (pixels of the 128-px face crop).")
    if unsafe:
        lines.append("**No tested strength is safe for: " + ", ".join(unsafe) + ".** An attacker brings the "
                     "identity back across the whole range (the table names the closest one).")
    if result.excluded:
        lines.append(f"Left out for speed: {', '.join(result.excluded)} (run `python -m audit.safety --thorough`).")
    lines.append(safety.LOWER_BOUND_NOTE)
    return "\n\n".join(lines)


def safety_outputs(image: np.ndarray, margin: float, publish_bytes: Callable[[bytes, str], str],
                   progress: Callable[[float, str], None] | None = None, face: int = 1) -> list:
    """The tab's outputs for a photo already read: figures, table, obscured faces, PNG downloads, reading.

    Args:
        publish_bytes: writes an output file where the page can fetch it and returns its path (the app writes
            into Gradio's cache, which deletes it after a stated lifetime).
    """
    result, scale, which_face = run_safety(image, margin, progress=progress, face=face)
    figures = [safety.figure(result, k) for k in PLOT_KINDS]
    images, files = [], []
    for kind, rec in result.recommendations.items():
        data = result.png(kind)
        if data is None:
            continue
        path_png = publish_bytes(data, f"obscured_{kind}_{rec.strength:g}.png")
        files.append(path_png)
        images.append((path_png, f"{KIND_LABELS[kind]} at {rec.strength:g}"))
    return [*figures, recommendation_table(result, scale), images, files, reading(result, which_face)]


@user_errors
def safety_request(path: str | None, margin: float, face: float = 1, kept: dict | None = None,
                   progress: gr.Progress = gr.Progress()) -> list:  # noqa: B008 - Gradio injects progress via the default
    """The Run button: read and delete the upload, sweep it, publish the obscured faces."""
    image, kept = uploads.take_photo(path, kept)
    outputs = safety_outputs(image, margin, uploads.publish_bytes, progress=lambda f, msg: progress(f, desc=msg),
                             face=int(face))
    return [*outputs, kept]


def parse_boxes(text: str | None) -> list[tuple[float, float, float, float]]:
    """Hand-drawn face boxes, one ``x0,y0,x1,y1`` per line (or separated by ``;``), in pixels of the photo.

    Raises:
        ValueError: naming the box that is not four numbers with ``x1 > x0`` and ``y1 > y0``.
    """
    parts = [p.strip() for line in (text or "").splitlines() for p in line.split(";")]
    return [safety.parse_box(p) for p in parts if p]


def _report_table(result: safety.AnonymiseResult) -> pd.DataFrame:
    """The tab's per-face table: :meth:`audit.safety.AnonymiseResult.report` in words."""
    rows = []
    for f, r in zip(result.faces, result.report().to_dict(orient="records"), strict=True):
        closest = (f"{r['closest_attacker']} ({r['closest_distance']:.2f} / {r['closest_threshold']:.2f})"
                   if isinstance(r.get("closest_attacker"), str) else "")
        box = ", ".join(f"{v:.0f}" for v in f.box)
        rows.append({"face": f.index + 1, "found by": f.source, "box (x0, y0, x1, y1)": box,
                     "obscured with": KIND_LABELS.get(f.kind, f.kind) if f.kind != "fill" else "solid fill (black)",
                     "strength (crop px)": None if f.kind == "fill" else f.strength,
                     "in your photo (px)": None if f.kind == "fill" else round(f.strength_photo, 1),
                     "verdict": f.verdict, "closest attacker (distance / threshold)": closest})
    return pd.DataFrame(rows, columns=REPORT_COLUMNS)


def _anonymise_summary(result: safety.AnonymiseResult, check: dict) -> str:
    verdicts = pd.Series([f.verdict for f in result.faces]).value_counts()
    lines = [f"**{len(result.faces)} face(s)** obscured: " + ", ".join(f"{n} {v}" for v, n in verdicts.items())
             + f" ({result.seconds:.1f} s). Every face was attacked again *in the output photo* by "
             f"{', '.join(result.settings['attackers']) or 'no attacker'}; a face that any of them re-identified "
             "got the next strength, and past the last one a black fill."]
    lines.append(f"Independent check (dlib's own detector, landmarks and descriptor, threshold {check['threshold']}): "
                 f"{check['faces_original']} face(s) in your photo, {check['faces_anonymised']} in the output; "
                 f"of the obscured faces **{len(check['reidentified'])} re-identified**.")
    for box in check["unobscured"]:
        lines.append(f"**Look at {','.join(map(str, box))}**: dlib sees a face there that was not obscured (a face "
                     "our detector missed, or a false detection such as a badge). If it is a face, add this box "
                     "below and run again.")
    lines.append("**Missed faces are the main risk**: look at the output. If a face is not obscured, type its box "
                 "(x0,y0,x1,y1 in pixels of your photo, one per line) and run again. The PNG carries no metadata "
                 "(no EXIF, no GPS, no text).")
    lines.append(safety.LOWER_BOUND_NOTE)
    return "\n\n".join(lines)


def anonymise_outputs(image: np.ndarray, kind: str, boxes: str | None,
                      publish_bytes: Callable[[bytes, str], str],
                      progress: Callable[[float, str], None] | None = None) -> list:
    """Anonymise a photo already read: the output image (PNG path), the download, the per-face table, the summary.

    Raises:
        ValueError: an unknown kind, a malformed box or one outside the photo, or no face found and no box given.
    """
    code = ANON_KINDS.get(kind, kind)
    result = safety.anonymise(image, boxes=parse_boxes(boxes), kind=code, progress=progress)
    if not result.faces:
        raise ValueError("No face found in this photo, so nothing was obscured. If there is a face, type its box "
                         "(x0,y0,x1,y1 in pixels of the photo) under 'Faces the detector missed' and run again.")
    check = safety.independent_check(image, result.image, obscured=[f.box for f in result.faces])
    path = publish_bytes(result.png(), "anonymised.png")
    return [path, [path], _report_table(result), _anonymise_summary(result, check)]


@user_errors
def anonymise_request(path: str | None, kind: str, boxes: str | None, kept: dict | None = None,
                      progress: gr.Progress = gr.Progress()) -> list:  # noqa: B008 - Gradio injects progress via the default
    """The Anonymise button: read and delete the upload, obscure every face, verify, publish a clean PNG."""
    image, kept = uploads.take_photo(path, kept)
    outputs = anonymise_outputs(image, kind, boxes, uploads.publish_bytes,
                                progress=lambda f, msg: progress(f, desc=msg))
    return [*outputs, kept]


def tab() -> None:
    """Lay out the 'Is this blur safe?' tab and wire its events (inside a ``gr.Blocks``)."""
    with gr.Tab("Is this blur safe?", id="safety"):
        gr.Markdown(
            "How strong must blurring or pixelation be before **none of our attackers** can bring the identity "
            "back? Each degradation is swept over a range of strengths and four attackers try every one: "
            "*restore-then-match* (deconvolution *told the true kernel*, our learned models, no restoration), the "
            "*parrot* (matches the obscured face against faces obscured the same way), *unknown kernel* (guesses "
            "the kernel first) and a *learned* attacker (a network trained on obscured faces). A face matcher "
            "(dlib) decides whether each result is still this person. An uploaded photo is judged by dlib's "
            "published threshold alone: the parrot and the learned attacker need a gallery of faces like yours "
            "(`python -m audit.safety --image photo.jpg --gallery FOLDER`). The answer is a lower bound on the "
            "risk (see the note under the result).")
        with gr.Row():
            with gr.Column(scale=1):
                photo = uploads.photo_input(label="Photo", sources=["upload", "clipboard"], height=240)
                gr.Examples([[str(p)] for p in example_photos()], inputs=[photo], label="Examples")
            with gr.Column(scale=1):
                margin = gr.Slider(0.0, 0.3, value=0.0, step=0.05,
                                   label="Safety margin added to the match threshold (L2 distance)")
                face = gr.Number(1, precision=0, minimum=1, label="Face # (group photos: 1 = the largest)")
                run = gr.Button("Run the sweep (about 30 s)", variant="primary")
                summary = gr.Markdown()
        table = gr.Dataframe(headers=TABLE_COLUMNS, max_height=1200, interactive=False, wrap=True,
                             label="Recommended strength per degradation (pixels of the 128-px face crop)",
                             column_widths=["12%", "9%", "9%", "7%", "7%", "14%", "42%"])
        with gr.Row():
            obscured = gr.Gallery(label="Face obscured at the recommended strength", format="png", columns=4,
                                  height=200)
            downloads = gr.File(label="Download (PNG, no metadata)", file_count="multiple", interactive=False)
        plots = []
        for start in range(0, len(PLOT_KINDS), 2):
            with gr.Row():
                for kind in PLOT_KINDS[start:start + 2]:
                    plots.append(gr.Plot(label=KIND_LABELS[kind]))
        memory = uploads.kept_photo()
        run.click(safety_request, [photo, margin, face, memory], [*plots, table, obscured, downloads, summary, memory],
                  api_name="safety")
        gr.Markdown("### Anonymise this photo\nEvery face is found (group photos too), obscured in its aligned crop "
                    "at the first strength that **none of our attackers** re-identifies in the output photo, and "
                    "checked again by an independent dlib pipeline. You get a PNG without metadata.")
        with gr.Row():
            with gr.Column(scale=1):
                anon_kind = gr.Radio(list(ANON_KINDS), value=next(iter(ANON_KINDS)), label="Obscure faces with")
                boxes = gr.Textbox(label="Faces the detector missed (optional): x0,y0,x1,y1 in pixels of the "
                                         "photo, one per line", lines=2, placeholder="120,40,220,160")
                anon_run = gr.Button("Anonymise every face", variant="primary")
                anon_file = gr.File(label="Download (PNG, no metadata)", file_count="multiple", interactive=False)
            with gr.Column(scale=1):
                anon_image = gr.Image(label="Anonymised photo", type="filepath", format="png", interactive=False,
                                      height=360)
        anon_table = gr.Dataframe(headers=REPORT_COLUMNS, max_height=1200, interactive=False, wrap=True,
                                  label="Per face: what was applied and the attacker that came closest",
                                  column_widths=["6%", "9%", "14%", "13%", "9%", "9%", "10%", "30%"])
        anon_summary = gr.Markdown()
        # the same memory as the sweep: whichever button runs first consumes the upload, the other reads memory
        anon_run.click(anonymise_request, [photo, anon_kind, boxes, memory],
                       [anon_image, anon_file, anon_table, anon_summary, memory], api_name="anonymise")
