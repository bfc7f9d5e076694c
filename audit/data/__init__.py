"""The data sets the audit reads, with public helpers only.

- :mod:`audit.data.labelled`: :class:`LabelledFaces` (what every loader returns) and :func:`iter_images`.
- :mod:`audit.data.files`: safe reading of a data folder (paths kept inside it, label CSVs, skip reasons).
- :mod:`audit.data.loaders`: CelebA, FairFace (CSV release), UTKFace, a folder + CSV; :func:`load_dataset`.
- :mod:`audit.data.fairface`: FairFace's validation split from the Hugging Face Hub, cached and verified.
- :mod:`audit.data.source`: :func:`face_source`, the one reader of ``--data`` the engine and the safety CLI share.

The built-in generated-face set stays in :mod:`deblur.data`: training uses it too, and ``deblur`` must not
import ``audit``. :func:`face_source` reads it for ``--data builtin``.
"""

from audit.data.fairface import DatasetUnavailable, fairface_faces
from audit.data.labelled import LabelledFaces, iter_images
from audit.data.loaders import FORMATS, load_dataset
from audit.data.source import FaceItem, face_items, face_source

__all__ = ["FORMATS", "DatasetUnavailable", "FaceItem", "LabelledFaces", "face_items", "face_source", "fairface_faces",
           "iter_images", "load_dataset"]
