"""The Gradio app: the only package that imports gradio.

One module per tab, layout and handlers together (:mod:`ui.playground`, :mod:`ui.audit_tab`,
:mod:`ui.safety_tab`, :mod:`ui.about`); what the tabs share lives once: :mod:`ui.uploads` (reading and deleting
uploads, publishing outputs), :mod:`ui.errors` (a library's error shown as a message), :mod:`ui.common` (example
photos, labels, the Spaces GPU decorator). The work itself is done by gradio-free code in :mod:`deblur` and
:mod:`audit`, the same code the command lines run. :func:`build_app` assembles the tabs; ``app.py`` launches it
(locally and on Hugging Face Spaces).
"""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # must precede the first `import gradio`: no telemetry

from ui.build import CONCURRENCY_LIMIT, LAUNCH_OPTIONS, build_app  # noqa: E402 - after the telemetry switch above

__all__ = ["CONCURRENCY_LIMIT", "LAUNCH_OPTIONS", "build_app"]
