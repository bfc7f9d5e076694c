"""Anonymise a photo: obscure every face at a strength no attacker beats, verify it, write a clean PNG.

``python -m audit.safety --anonymise photo.jpg --out safe.png [--box x0,y0,x1,y1 ...]`` and the app's
"Is this blur safe?" tab both call :func:`anonymise`:

1. **Find every face**: MTCNN (:func:`deblur.faces.detect_faces`, down to ``min_size`` px) plus the boxes
   the user adds by hand (a missed face is the main risk; detector recall is in ``results/anonymise/``).
2. **Obscure each face** in its aligned 128-px crop with ``kind`` at the first strength of :data:`LADDER`
   and paste it back (:func:`deblur.faces.paste_face`); strengths are pixels of that crop, so the
   protection is the same for a 40-px and a 400-px face.
3. **Verify**: cut the face out of the *output* photo at the same place and run every attacker
   (:mod:`audit.safety.attackers`: restore-then-match, parrot, unknown kernel, learned) against a gallery that
   holds the person through a re-captured second view. If any attacker re-identifies, take the next
   strength; past the last one, fill the crop with black. A face whose clean crop the embedder cannot read
   cannot be verified and is filled.
4. Return the image (write it with :meth:`AnonymiseResult.png`: only ``IHDR``/``IDAT``/``IEND`` chunks, no
   EXIF, no text) and a per-face report.

:func:`independent_check` re-identifies with a pipeline that shares no code with ours: dlib's HOG detector
on the full photo, its 5-point shape predictor and ResNet descriptor, dlib's own 0.6 threshold.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import matplotlib
import numpy as np
import pandas as pd
from skimage import data as skdata

from audit.safety.attackers import attack_context, default_attackers, default_fill_attackers
from audit.safety.obscure import obscure
from deblur.data import builtin_faces
from deblur.degrade import as_image, quantize
from deblur.faces import Face, FaceCrop, crop_face, detect_faces, paste_face
from deblur.io import encode_png, load_image

__all__ = ["LADDER", "AnonymiseResult", "FaceReport", "anonymise", "example_group_photo", "independent_check",
           "parse_box"]

# Strengths tried in order per kind (pixels of the 128-px crop); the first one every attacker fails wins.
LADDER: dict[str, tuple[float, ...]] = {"pixelate_noise": (8, 12, 16), "pixelate": (12, 16), "gaussian": (12,),
                                        "fill": (1,)}
FEATHER = 3  # soft edge (crop px) where the obscured crop meets the photo


def parse_box(text: str) -> tuple[float, float, float, float]:
    """``"x0,y0,x1,y1"`` (photo pixels) -> a box.

    Raises:
        ValueError: with the expected syntax when ``text`` is not four numbers with ``x1 > x0`` and ``y1 > y0``.
    """
    try:
        x0, y0, x1, y1 = (float(v) for v in str(text).replace(" ", "").split(","))
    except ValueError:
        raise ValueError(f"a face box is four numbers x0,y0,x1,y1 in pixels of the photo, got {text!r}") from None
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"face box {text!r}: x1 must be > x0 and y1 > y0 (corners top-left, bottom-right)")
    return x0, y0, x1, y1


@dataclass
class FaceReport:
    """What happened to one face.

    Attributes:
        index: face number (largest detected first, then hand-drawn boxes).
        box: ``(x0, y0, x1, y1)`` in photo pixels.
        source: ``"detector"`` or ``"manual"``.
        score: detector confidence (1 for a hand-drawn box).
        kind, strength: the obscuring applied (strength in pixels of the 128-px crop).
        strength_photo: the same strength in pixels of the photo.
        verdict: ``"safe"`` (no attacker re-identifies), ``"filled"`` (every strength was beaten, or the face
            could not be verified; the black fill was attacked too), ``"not verified"`` (``verify=False``) or
            ``"RE-IDENTIFIED even when filled"`` (never expected; reported, not hidden).
        attempts: ``(kind, strength, winning attacker or "")`` per strength tried.
        rows: the attack rows of the final attempt (one per attacker and variant).
    """

    index: int
    box: tuple[float, float, float, float]
    source: str
    score: float
    kind: str
    strength: float
    strength_photo: float
    verdict: str
    attempts: list = field(default_factory=list)
    rows: pd.DataFrame | None = None


@dataclass
class AnonymiseResult:
    """The anonymised photo and the per-face report.

    Attributes:
        image: ``HxWx3`` float32 in ``[0, 1]``.
        faces: one :class:`FaceReport` per face.
        seconds: wall time; ``detect_seconds`` of it spent detecting.
        settings: kind, ladder, detector, min face size, seed.
    """

    image: np.ndarray
    faces: list[FaceReport]
    seconds: float
    detect_seconds: float
    settings: dict

    def png(self) -> bytes:
        """The image as metadata-free PNG bytes."""
        return encode_png(self.image)

    def report(self) -> pd.DataFrame:
        """One row per face: box, source, obscuring, verdict, the closest attacker and its distance/threshold."""
        out = []
        for f in self.faces:
            row = {"face": f.index, "x0": f.box[0], "y0": f.box[1], "x1": f.box[2], "y1": f.box[3], "source": f.source,
                   "score": round(f.score, 3), "kind": f.kind, "strength_crop_px": f.strength,
                   "strength_photo_px": round(f.strength_photo, 1), "verdict": f.verdict,
                   "attempts": "; ".join(f"{k} {s:g}: {w or 'no attacker re-identifies'}" for k, s, w in f.attempts)}
            if f.rows is not None and len(f.rows):
                r = f.rows.assign(margin_left=f.rows["distance"] - f.rows["threshold"])
                ok = r[r["status"] == "ok"]
                if len(ok):
                    c = ok.loc[ok["margin_left"].idxmin()]
                    row.update(closest_attacker=f"{c['attacker']}: {c['restorer']}", closest_distance=c["distance"],
                               closest_threshold=c["threshold"], any_rank1=bool(r["rank1"].any()))
                row["attackers"] = ", ".join(sorted(r["attacker"].unique()))
            out.append(row)
        return pd.DataFrame(out)


def _photo_scale(crop: FaceCrop) -> float:
    """Crop pixels per photo pixel of a face crop (the similarity transform's scale)."""
    m = np.asarray(crop.matrix, float)
    return float(math.hypot(m[0, 0], m[1, 0]))


def _recut(photo: np.ndarray, crop: FaceCrop) -> np.ndarray:
    """The crop region of ``photo`` cut with the same affine map as ``crop`` (the attacker's probe)."""
    size = crop.image.shape[0]
    out = cv2.warpAffine(as_image(photo), crop.matrix, (size, size), flags=cv2.INTER_AREA if _photo_scale(crop) < 1
                         else cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT101)
    return quantize(np.clip(out, 0, 1))


def _attempt(photo: np.ndarray, crop: FaceCrop, obscured: np.ndarray, team: Sequence, kind: str, strength: float,
             ctx) -> tuple[pd.DataFrame, str]:
    """One verification try: ``obscured`` pasted into ``photo`` at ``crop``, re-cut and attacked by ``team``.

    Returns:
        The attackers' rows, and ``"attacker: restorer"`` of the first that re-identifies the face (``""``: none).
    """
    trial = paste_face(photo, obscured, crop, FEATHER)
    probe = _recut(trial, crop)  # what an attacker cuts from the published photo
    rows = pd.concat([pd.DataFrame(a.attack(kind, [strength], [probe], ctx)).assign(attacker=a.name) for a in team],
                     ignore_index=True)
    hit = rows[(rows["distance"] <= rows["threshold"]).fillna(False) | rows["rank1"].astype(bool)]
    return rows, "" if hit.empty else f"{hit.iloc[0]['attacker']}: {hit.iloc[0]['restorer']}"


def anonymise(photo: np.ndarray, *, boxes: Sequence[Sequence[float]] = (), kind: str = "pixelate_noise",
              ladder: Sequence[float] | None = None, detector: str = "mtcnn", min_size: int = 12, verify: bool = True,
              attackers: Sequence | None = None, context: Callable | None = None, seed: int = 0,
              progress: Callable[[float, str], None] | None = None) -> AnonymiseResult:
    """Obscure every face of ``photo`` so that none of our attackers re-identifies it.

    Args:
        photo: the photo (anything :func:`deblur.degrade.as_image` accepts).
        boxes: extra face boxes ``(x0, y0, x1, y1)`` in photo pixels, drawn by hand.
        kind: ``"pixelate_noise"`` (default), ``"pixelate"``, ``"gaussian"`` or ``"fill"``.
        ladder: strengths to try in order (default :data:`LADDER`); black fill after the last.
        detector: ``"mtcnn"`` or ``"haar"``.
        min_size: smallest face side (photo px) the detector reports.
        verify: run the attackers on the output (else every face gets the ladder's first strength).
        attackers: the attackers of every step (default: :func:`audit.safety.default_attackers` for ``kind``,
            and for the black fill :func:`audit.safety.attackers.default_fill_attackers`).
        context: ``context(clean_crop) -> AttackContext | None`` (default: :func:`audit.safety.attack_context`:
            built-in gallery, re-captured second view, black fill; ``None`` when the embedder cannot read the
            face). Faces are obscured with the context's own obscuring, so what is verified is what is written.
        seed: noise seed.
        progress: ``progress(fraction, message)``.

    Raises:
        ValueError: unknown kind, a box outside the photo, or an empty ladder.
    """

    start = time.perf_counter()
    if kind not in LADDER:
        raise ValueError(f"anonymise with one of {sorted(LADDER)}, got {kind!r}")
    steps = tuple(ladder) if ladder is not None else LADDER[kind]
    if not steps:
        raise ValueError("the strength ladder is empty; give at least one strength")
    img = as_image(photo, name="photo")
    h, w = img.shape[:2]
    t0 = time.perf_counter()
    faces = [(f, "detector") for f in detect_faces(img, detector, min_size=min_size)]
    detect_seconds = time.perf_counter() - t0
    for b in boxes:
        x0, y0, x1, y1 = (float(v) for v in b)
        if x1 <= 0 or y1 <= 0 or x0 >= w or y0 >= h or x1 <= x0 or y1 <= y0:
            raise ValueError(f"face box {tuple(b)} lies outside the {w}x{h} photo (x0,y0,x1,y1 in pixels)")
        faces.append((Face((x0, y0, x1, y1), 1.0), "manual"))
    if attackers is not None:
        ladder_attackers = fill_attackers = list(attackers)
    else:
        ladder_attackers = default_attackers([kind]) if verify else []
        fill_attackers = default_fill_attackers() if verify else []
    context = context or functools.partial(attack_context, seed=seed, fill="black")
    out = img.copy()
    reports = []
    for i, (face, source) in enumerate(faces):
        if progress is not None:
            progress(i / max(1, len(faces)), f"face {i + 1} of {len(faces)}")
        crop = crop_face(img, face, 128)
        clean = quantize(crop.image)
        ctx = context(clean) if verify else None
        # the attackers' own obscuring (the parrot obscures its gallery with it): what is verified is what is written
        hide = ctx.obscure if ctx is not None else functools.partial(obscure, fill="black")

        attempts, rows, verdict, used = [], None, "not verified", (kind, float(steps[0]))
        if verify and ctx is None:
            used, verdict = ("fill", 1.0), "filled"
            attempts.append((kind, float(steps[0]), "not verifiable: the embedder cannot read the face's second view"))
        elif verify:
            for s in (*steps, None):
                k, s = (kind, float(s)) if s is not None else ("fill", 1.0)
                team = fill_attackers if k == "fill" else ladder_attackers
                rows, winner = _attempt(out, crop, hide(clean, k, s, seed=seed + i), team, k, s, ctx)
                attempts.append((k, s, winner))
                used = (k, s)
                if not winner:
                    verdict = "safe" if k == kind else "filled"
                    break
            else:
                verdict = "RE-IDENTIFIED even when filled"
        k, s = used
        out = paste_face(out, hide(clean, k, s, seed=seed + i), crop, FEATHER)
        reports.append(FaceReport(i, tuple(float(v) for v in face.box), source, face.score, k, s,
                                  s / _photo_scale(crop) if k != "fill" else math.nan, verdict, attempts, rows))
    settings = {"kind": kind, "ladder": list(steps), "detector": detector, "min_size": min_size, "seed": seed,
                "verify": verify, "attackers": [a.name for a in ladder_attackers], "second_view": "recapture (proxy)"}
    return AnonymiseResult(quantize(out), reports, time.perf_counter() - start, detect_seconds, settings)


@functools.lru_cache(maxsize=1)
def _dlib_pipeline():
    import dlib  # dlib's own pipeline, deliberately not through deblur.embed

    # the model files' folder, found without importing face_recognition_models (it needs pkg_resources)
    spec = importlib.util.find_spec("face_recognition_models")
    models = Path(list(spec.submodule_search_locations)[0]) / "models"
    return (dlib.get_frontal_face_detector(),
            dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat")),
            dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat")))


def _dlib_faces(img: np.ndarray, upsample: int) -> list[tuple[tuple[int, int, int, int], np.ndarray]]:
    detector, shape, resnet = _dlib_pipeline()
    u8 = np.ascontiguousarray((as_image(img) * 255 + 0.5).astype(np.uint8))
    found = []
    for r in detector(u8, upsample):
        found.append(((r.left(), r.top(), r.right(), r.bottom()),
                      np.asarray(resnet.compute_face_descriptor(u8, shape(u8, r)), float)))
    return found


def _overlaps(box: Sequence[float], others: Sequence[Sequence[float]]) -> bool:
    """Whether ``box``'s centre lies inside any of ``others`` (all ``x0, y0, x1, y1``)."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return any(o[0] <= cx <= o[2] and o[1] <= cy <= o[3] for o in others)


def independent_check(original: np.ndarray, anonymised: np.ndarray, threshold: float = 0.6,
                      upsample: int = 1, obscured: Sequence[Sequence[float]] | None = None) -> dict:
    """Re-identify with dlib's own detect → 5 landmarks → descriptor pipeline on the full photos.

    Every face dlib finds in the anonymised photo is compared with every face it finds in the original;
    a pair closer than ``threshold`` (dlib's documented 0.6) is a re-identification.

    Args:
        obscured: the boxes the anonymiser obscured (photo pixels). A face dlib finds in the output *outside*
            them was not touched: a face our detector missed (the main risk) or a false detection (a badge, a
            pattern); it matches its own original at distance 0 and is listed under ``unobscured`` for the user
            to look at, apart from ``reidentified`` (matches of faces that *were* obscured).

    Returns:
        ``{"faces_original", "faces_anonymised", "threshold", "matches": [(i_orig, j_anon, distance)],
        "reidentified": matches of obscured faces, "unobscured": [box of each face found outside them],
        "min_distance"}`` (without ``obscured``, every match counts as re-identified).
    """
    before = _dlib_faces(original, upsample)
    after = _dlib_faces(anonymised, upsample)
    pairs = [(i, j, float(np.linalg.norm(a[1] - b[1]))) for i, a in enumerate(before) for j, b in enumerate(after)]
    matches = [p for p in pairs if p[2] < threshold]
    outside = set() if obscured is None else {j for j, (box, _) in enumerate(after) if not _overlaps(box, obscured)}
    return {"faces_original": len(before), "faces_anonymised": len(after), "threshold": threshold,
            "matches": matches, "reidentified": [m for m in matches if m[1] not in outside],
            "unobscured": [tuple(int(v) for v in after[j][0]) for j in sorted(outside)],
            "min_distance": min((p[2] for p in pairs), default=math.nan)}


def example_group_photo(n_generated: int = 4, tile: int = 224, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """A group photo of real and generated people: NASA's astronaut (scikit-image), Grace Hopper (matplotlib's
    sample data) and ``n_generated`` built-in test faces that are not attack candidates, tiled in rows of three
    at varied face sizes on a grey background. Returns the photo and the name of each face, in tile order.
    """
    hopper = load_image(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg")
    real = {"astronaut": skdata.astronaut(), "grace_hopper": hopper}
    test = builtin_faces(4000, seed).subset("test")
    people: list[tuple[str, np.ndarray, float]] = []
    for name, img in real.items():
        img = as_image(img)
        f = detect_faces(img)[0]
        x0, y0, x1, y1 = f.box
        side = 1.9 * max(x1 - x0, y1 - y0)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        m = np.array([[1, 0, side / 2 - cx], [0, 1, side / 2 - cy]], float)
        people.append((name, cv2.warpAffine(img, m, (int(side), int(side)), borderMode=cv2.BORDER_REFLECT101), 0.95))
    scales = (0.8, 0.6, 0.7, 0.5, 0.9, 0.65)
    for k in range(n_generated):
        idx = 300 + k  # outside the built-in gallery (the first 200 test faces): strangers to every attacker
        people.append((test.ids[idx], test.images[idx].astype(np.float32) / 255.0, scales[k % len(scales)]))
    rows = math.ceil(len(people) / 3)
    photo = np.full((rows * tile, 3 * tile, 3), 0.55, np.float32)
    for k, (_, img, scale) in enumerate(people):
        side = int(tile * scale)
        face = cv2.resize(img, (side, side), interpolation=cv2.INTER_AREA if img.shape[0] > side else cv2.INTER_CUBIC)
        y, x = (k // 3) * tile + (tile - side) // 2, (k % 3) * tile + (tile - side) // 2
        photo[y:y + side, x:x + side] = np.clip(face, 0, 1)
    return quantize(photo), [p[0] for p in people]


def anonymise_file(photo_path: str | Path, out: str | Path, *, boxes: Sequence[str] = (), kind: str = "pixelate_noise",
                   seed: int = 0, check: bool = True, echo: Callable[[str], None] = print) -> int:
    """The ``--anonymise`` command: read a photo, anonymise it, write ``out`` (PNG) and ``<out>.report.csv/json``.

    Returns:
        The exit status: 0 done, 2 bad input (message printed), 3 no face found and no ``--box`` given.
    """
    out = Path(out)
    if out.suffix.lower() != ".png":
        echo(f"--out must name a .png file for --anonymise (PNG keeps no metadata), got {out}")
        return 2
    try:
        photo = load_image(photo_path)
        parsed = [parse_box(b) for b in boxes]
    except (OSError, ValueError) as exc:
        echo(f"cannot anonymise {photo_path}: {exc}")
        return 2
    res = anonymise(photo, boxes=parsed, kind=kind, seed=seed,
                    progress=lambda f, m: print(f"\r{m}", end="", file=sys.stderr, flush=True))
    print(file=sys.stderr)
    if not res.faces:
        echo(f"no face found in {photo_path}; nothing was written. If there is a face, give its box with "
             "--box x0,y0,x1,y1 (pixels of the photo).")
        return 3
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(res.png())
    report = res.report()
    report.to_csv(out.with_suffix(".report.csv"), index=False)
    info = {"photo": str(photo_path), "output": str(out), "seconds": round(res.seconds, 2), **res.settings,
            "faces": report.to_dict(orient="records")}
    if check:
        info["independent_dlib_check"] = independent_check(photo, res.image, obscured=[f.box for f in res.faces])
    out.with_suffix(".report.json").write_text(json.dumps(info, indent=1, default=str))
    cols = [c for c in ("face", "source", "kind", "strength_crop_px", "strength_photo_px", "verdict",
                        "closest_attacker", "closest_distance", "closest_threshold") if c in report]
    echo(report[cols].to_string(index=False))
    if check:
        c = info["independent_dlib_check"]
        echo(f"independent dlib check (HOG -> 5 landmarks -> descriptor, threshold {c['threshold']}): "
             f"{c['faces_original']} faces in the original, {c['faces_anonymised']} in the output, "
             f"{len(c['reidentified'])} obscured face(s) re-identified")
        for box in c["unobscured"]:
            echo(f"  dlib finds a face we did not obscure at {','.join(map(str, box))}: if it is a face, run again "
                 f"with --box {','.join(map(str, box))}")
    echo(f"wrote {out} (no metadata), {out.with_suffix('.report.csv')}, {out.with_suffix('.report.json')} "
         f"in {res.seconds:.1f} s")
    return 0
