"""The About tab: what the models are, the study's ethics points, data limits, privacy, model cards, credits."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from ui import uploads

__all__ = ["ABOUT", "CARDS_DIR", "model_cards", "tab"]

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

## Licences and credits

- Example photos: see `examples/SOURCES.md` (NASA astronaut portrait, public domain; generated faces).
- Face generator: gan-face-generate 1.1.1, MIT licence, © 2023 chien liu.
- Face detection: MTCNN weights from facenet-pytorch (MIT); OpenCV Haar cascade. Identity: dlib ResNet
  embedding (face-recognition-models, CC0).
- facedrift itself: MIT licence.
"""

CARDS_DIR = Path(__file__).resolve().parent.parent / "weights" / "cards"


def model_cards(cards_dir: Path = CARDS_DIR) -> list[tuple[str, str]]:
    """``(title, markdown)`` of every model card in ``weights/cards/``, sorted by file name."""
    cards = []
    for path in sorted(cards_dir.glob("*.md")):
        text = path.read_text(encoding="utf-8")
        first = next((line.lstrip("# ").strip() for line in text.splitlines() if line.strip()), path.stem)
        title = first.removeprefix("Model card:").strip().strip("`")  # the accordion says "Model card:" itself
        cards.append((title or path.stem, text))
    return cards


def tab() -> None:
    """Lay out the About tab: what the models are, the study's ethics points, model cards, data limits, credits."""
    with gr.Tab("About", id="about"):
        gr.Markdown(ABOUT)
        gr.Markdown("## Privacy of this app\n\n" + uploads.PRIVACY)
        cards = model_cards()
        gr.Markdown("## Model cards" if cards else "## Model cards\nNo trained model is shipped in this copy.")
        for title, text in cards:
            with gr.Accordion(f"Model card: {title}", open=False):
                gr.Markdown(text)
