"""facedrift: the Gradio app's entry point (`python app.py`, `facedrift-app`, or Hugging Face Spaces' app_file).

The app itself is the :mod:`ui` package; this file only launches it. Nothing heavy happens at import.
"""

from __future__ import annotations

import os

from ui import CONCURRENCY_LIMIT, LAUNCH_OPTIONS, build_app

__all__ = ["CONCURRENCY_LIMIT", "LAUNCH_OPTIONS", "build_app", "main"]


def main() -> None:
    """Launch the app with a bounded queue (CPU-bound handlers), one share of the cores per request."""
    import torch  # heavy: only when the app is launched, never at import (tests import this module)

    # Oversubscribed OpenMP threads make small CPU convolutions (MTCNN on a photo) 50x slower; measured in
    # bench/bench_playground.py. Each of the concurrent requests gets its share of the cores instead.
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // CONCURRENCY_LIMIT))
    build_app().queue(default_concurrency_limit=CONCURRENCY_LIMIT, max_size=32).launch(**LAUNCH_OPTIONS)


if __name__ == "__main__":
    main()
