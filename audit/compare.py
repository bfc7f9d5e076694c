"""``python -m audit.compare A.jpg B.jpg``: are these the same person, according to our identity model?

The simplest question a user asks of an identity model, and our own sanity check of the measurement
every other number is built on. Each photo's faces are detected and cut into facedrift's one crop
geometry (:mod:`deblur.faces`), embedded (:mod:`deblur.embed`), and the L2 distance is judged against a
threshold whose source is printed with it.

Examples::

    python -m audit.compare me.jpg me_too.jpg            # the main (largest) face of each photo
    python -m audit.compare group.jpg friend.jpg --all   # every face of A against every face of B
    python -m audit.compare a.jpg b.jpg --json           # machine-readable
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from deblur.embed import (
    EMBEDDERS,
    PUBLISHED_THRESHOLDS,
    Embedder,
    EmbedderUnavailable,
    PublishedThreshold,
    get_embedder,
    l2_distance,
)
from deblur.faces import CROP_SIZE, NoFaceError, crop_face, detect_faces
from deblur.io import ImageError, load_image

__all__ = ["FacePair", "compare", "main", "threshold_for"]


def threshold_for(embedder_key: str, override: float | None = None) -> PublishedThreshold:
    """The threshold to judge with: ``override`` (the user's) or the embedder's published one.

    Raises:
        ValueError: when the embedder has no published threshold and none was given.
    """
    if override is not None:
        if not override > 0:
            raise ValueError(f"--threshold must be a positive L2 distance, got {override}")
        return PublishedThreshold(float(override), "given with --threshold")
    if embedder_key not in PUBLISHED_THRESHOLDS:
        raise ValueError(f"the {embedder_key} embedder has no published same-person threshold; pass --threshold "
                         "(e.g. one calibrated by `python -m audit` on your data, reported in run.json)")
    return PUBLISHED_THRESHOLDS[embedder_key]


@dataclass(frozen=True)
class FacePair:
    """One compared pair: which faces (index in its photo, largest first, and box), distance, verdict."""

    a: str
    face_a: int
    box_a: tuple[int, int, int, int]
    b: str
    face_b: int
    box_b: tuple[int, int, int, int]
    distance: float
    threshold: float
    verdict: str


def _faces(path: str, embedder: Embedder, every: bool) -> list[tuple[int, tuple[int, ...], object]]:
    """``(index, box, embedding)`` for the largest face (or every face) of one photo."""
    img = load_image(path)
    found = detect_faces(img)
    if not found:
        raise NoFaceError(f"{path}: no face found; use a photo with a clear, frontal face at least 20 px wide")
    chosen = found if every else found[:1]
    crops = [crop_face(img, face, CROP_SIZE).image for face in chosen]
    embeddings = embedder.embed_batch(crops)
    return [(i, tuple(int(round(v)) for v in face.box), emb)
            for i, (face, emb) in enumerate(zip(chosen, embeddings, strict=True))]


def compare(a: str, b: str, *, embedder: Embedder, threshold: PublishedThreshold,
            every: bool = False) -> list[FacePair]:
    """Compare the main faces of two photos (every face pair with ``every=True``).

    Raises:
        deblur.io.ImageError: unreadable or oversized photo.
        deblur.faces.NoFaceError: a photo without a detectable face.
    """
    faces_a, faces_b = _faces(a, embedder, every), _faces(b, embedder, every)
    pairs = []
    for ia, box_a, ea in faces_a:
        for ib, box_b, eb in faces_b:
            d = l2_distance(ea, eb)
            verdict = "same person" if d < threshold.distance else "different people"
            pairs.append(FacePair(a, ia, box_a, b, ib, box_b, round(d, 4), threshold.distance, verdict))
    return pairs


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m audit.compare", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a", help="first photo")
    p.add_argument("b", help="second photo")
    p.add_argument("--embedder", default="dlib", choices=sorted(EMBEDDERS), help="identity model (default dlib)")
    p.add_argument("--all", action="store_true", help="compare every face of A with every face of B")
    p.add_argument("--threshold", type=float, default=None,
                   help="same-person L2 threshold (default: the embedder's published one)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for path in (args.a, args.b):
        if not Path(path).is_file():
            print(f"error: {path} is not a file; pass two photo paths", file=sys.stderr)
            return 2
    try:
        threshold = threshold_for(args.embedder, args.threshold)
        embedder = get_embedder(args.embedder)
        pairs = compare(args.a, args.b, embedder=embedder, threshold=threshold, every=args.all)
    except (ValueError, ImageError, NoFaceError, EmbedderUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"embedder": embedder.name, "threshold": asdict(threshold),
                          "pairs": [asdict(p) for p in pairs]}, indent=2))
        return 0
    print(f"identity model: {embedder.name}; same person when L2 < {threshold.distance:g} ({threshold.source})")
    for p in pairs:
        print(f"{p.a} face {p.face_a} {p.box_a}  vs  {p.b} face {p.face_b} {p.box_b}:  "
              f"L2 {p.distance:.3f}  ->  {p.verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
