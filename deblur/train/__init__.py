"""Train a restoration model on the built-in faces: ``python -m deblur.train --model resunet ...``.

Modules: :mod:`~deblur.train.loop` (:class:`TrainConfig`, the loop), :mod:`~deblur.train.heldout` (held-out
metrics of one model, checkerboard diagnostic), :mod:`~deblur.train.evaluate` (the evaluation table over every
restorer, ``python -m deblur.train.evaluate``), :mod:`~deblur.train.release` (model cards, manifest,
RESULTS.md), :mod:`~deblur.train.sweep` (Figure C, ``python -m deblur.train.sweep``) and ``__main__`` (CLI).

Data: ``builtin_faces(n_faces, seed=face_seed)`` (128² generated faces, 64 px native). Each training face
is degraded ``pairs_per_face`` times at random strengths drawn from ``[low, high]`` with an explicit
``np.random.Generator``, rounded to 8 bits (:func:`deblur.degrade.quantize`), and — for models that refine
it — given its classical estimate, all on the FULL image before random ``patch x patch`` crops are cut, so
patches see the same boundary conditions as whole faces. Validation uses the ``val`` split, the final
metrics in the checkpoint the held-out ``test`` split (see :func:`~deblur.train.heldout.heldout_metrics`).

Checkpoints (``torch.save``) hold ``state_dict``, ``model_name``, ``model_args``, ``name``,
``degradation``, ``strengths``, ``train_config``, ``metrics``, ``train_seconds``, ``device``, ``params``,
``data``; every value is a plain type so :func:`deblur.restore.load_checkpoint` can use
``weights_only=True``.
"""


from deblur.train.heldout import (
           checkerboard_energy,
           checkerboard_peak_db,
           checkerboard_report,
           heldout_metrics,
           model_fn,
)
from deblur.train.loop import TrainConfig, make_pairs, train
from deblur.train.release import results_table, ship, write_card

__all__ = ["TrainConfig", "checkerboard_energy", "checkerboard_peak_db", "checkerboard_report", "heldout_metrics",
           "make_pairs", "model_fn", "results_table", "ship", "train", "write_card"]
