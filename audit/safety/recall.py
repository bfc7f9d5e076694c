"""Detector recall: how many faces the anonymiser would miss (a missed face is not anonymised at all).

``python -m audit.safety --recall --out results/anonymise`` writes ``recall.csv`` (one row per face and
condition) and ``recall_summary.csv`` (recall per condition with a Wilson 95 % interval).

Each face (built-in test faces and the real photographs of :func:`audit.safety.anonymise.example_group_photo`) is
placed in a grey scene at a given size, optionally rotated about the face centre, and the anonymiser's
detector runs on the scene (:func:`deblur.faces.detect_faces`, the anonymiser's ``min_size``). A face counts
as found when a detection's centre lies inside the true face square and its side is within a factor 2 of it.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import pandas as pd
from statsmodels.stats.proportion import proportion_confint

from deblur.data import builtin_faces
from deblur.degrade import as_image
from deblur.faces import detect_faces

__all__ = ["CONDITIONS", "detector_recall", "summarise_recall"]

# (face side in px, rotation in degrees)
CONDITIONS: tuple[tuple[int, float], ...] = ((128, 0), (64, 0), (40, 0), (28, 0), (20, 0), (14, 0),
                                             (128, 15), (128, 30), (128, 45), (128, 90))


def _scene(face: np.ndarray, side: int, angle: float) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """``face`` resized to ``side`` in a ``4 side`` grey scene (at least 160 px), rotated by ``angle`` about it."""
    size = max(160, 4 * side)
    img = cv2.resize(as_image(face), (side, side), interpolation=cv2.INTER_AREA if face.shape[0] > side
                     else cv2.INTER_CUBIC)
    scene = np.full((size, size, 3), 0.5, np.float32)
    o = (size - side) // 2
    scene[o:o + side, o:o + side] = np.clip(img, 0, 1)
    if angle:
        m = cv2.getRotationMatrix2D((size / 2, size / 2), angle, 1.0)
        scene = cv2.warpAffine(scene, m, (size, size), flags=cv2.INTER_LINEAR, borderValue=(0.5, 0.5, 0.5))
    # the face itself is ~75 % of an aligned crop; the true square is the crop's
    return scene, (o, o, o + side, o + side)


def _found(faces, box) -> bool:
    x0, y0, x1, y1 = box
    side = x1 - x0
    for f in faces:
        cx, cy = (f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2
        s = max(f.box[2] - f.box[0], f.box[3] - f.box[1])
        if x0 <= cx <= x1 and y0 <= cy <= y1 and side / 4 <= s <= 2 * side:
            return True
    return False


def detector_recall(n_builtin: int = 60, conditions: Sequence[tuple[int, float]] = CONDITIONS,
                    detector: str = "mtcnn", min_size: int = 12, real: Sequence[tuple[str, np.ndarray]] = ()
                    ) -> pd.DataFrame:
    """One row per face and condition: ``set, face, side, angle, found, n_detections``."""
    test = builtin_faces(4000, 0).subset("test")
    faces = [("built-in", test.ids[i], test.images[i]) for i in range(min(n_builtin, len(test)))]
    faces += [("real photo", name, img) for name, img in real]
    rows = []
    for side, angle in conditions:
        for group, name, face in faces:
            scene, box = _scene(face, side, angle)
            found = detect_faces(scene, detector, min_size=min_size)
            rows.append({"set": group, "face": name, "side": side, "angle": angle, "found": _found(found, box),
                         "n_detections": len(found)})
    return pd.DataFrame(rows)


def summarise_recall(df: pd.DataFrame) -> pd.DataFrame:
    """Recall per set, size and rotation with a Wilson 95 % interval."""
    g = df.groupby(["set", "side", "angle"])["found"].agg(["sum", "count"]).reset_index()
    lo, hi = proportion_confint(g["sum"], g["count"], method="wilson")
    return g.assign(recall=g["sum"] / g["count"], recall_lo=lo, recall_hi=hi).rename(
        columns={"sum": "found", "count": "faces"})
