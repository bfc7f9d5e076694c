"""External restorers: any Python callable or a running Gradio app / Hugging Face Space, audited like ours.

One spec syntax everywhere (``python -m audit``, ``python -m audit.safety``, ``python -m deblur.train.evaluate``,
the app)::

    NAME=module.sub:callable[?OPTIONS]            a Python callable (importable: installed or on PYTHONPATH)
    NAME=http://host:port/#/api_name[?OPTIONS]    a running Gradio app (the part after '#' is its api_name)
    NAME=owner/space#/api_name[?OPTIONS]          a Hugging Face Space (needs internet)

OPTIONS are comma-separated: ``nonblind`` (the restorer is told the strength, see below), ``timeout=S``
(seconds per call, default 120), ``retries=N`` (re-tries of connection errors and rate limits, default 2),
``rate=R`` (at most R calls per second), ``concurrency=N`` (calls in flight), ``kinds=gaussian+motion``
(degradations it is audited on; default all), ``out=K`` (which output of a multi-output Gradio endpoint),
``arg.NAME=VALUE`` (a fixed extra keyword argument, e.g. a Space's ``arg.codeformer_fidelity=0.7``; numbers and
true/false are read as such; values cannot contain commas).

What is sent: the degraded face as ``HxWx3`` uint8 RGB (a PNG file for Gradio apps). A Python callable also
gets ``kind=`` when its signature accepts it. External restorers are **blind** unless the spec says
``nonblind``: only then does the callable get ``strength=`` (its signature must accept it) and a Gradio
endpoint gets ``(image, kind, strength)``. Any output size is accepted and resized back to the input's, with
a note in the row. Every failure becomes a row status ``error:<reason>`` (see :data:`FAILURE_REASONS`) with
the details in the row's ``note``; no row is dropped.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace

from deblur.degrade import STRENGTHS

__all__ = ["DEFAULT_CONCURRENCY", "DEFAULT_RETRIES", "DEFAULT_TIMEOUT", "EXTERNAL_FAMILY", "FAILURE_REASONS",
           "RETRYABLE", "SPEC_HELP", "ExternalSpec", "app_specs", "parse_external"]

EXTERNAL_FAMILY = "external"
DEFAULT_TIMEOUT = 120.0
DEFAULT_RETRIES = 2
DEFAULT_CONCURRENCY = 4

#: Row status ``error:<reason>`` of a failed external call, and what each means.
FAILURE_REASONS = {
    "timeout": "the call did not finish within the timeout",
    "exception": "the callable raised / the app reported an error",
    "wrong_shape": "the output is an array but not an HxWx3 (or HxW / HxWx4) image",
    "not_image": "the output is not an image (None, text, a number, an unreadable file...)",
    "bad_values": "the output image holds NaN or values outside its dtype's range",
    "connection": "the app could not be reached (after retries)",
    "rate_limited": "the app kept answering 'too many requests' / 'queue full' (after retries)",
}
RETRYABLE = frozenset({"connection", "rate_limited"})

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
_PYTHON = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")
_SPACE = re.compile(r"[A-Za-z0-9][\w.\-]*/[A-Za-z0-9][\w.\-]*")
SPEC_HELP = ("NAME=module:callable, NAME=http://host:port/#/api_name or NAME=owner/space#/api_name, "
             "optionally followed by ?nonblind,timeout=S,retries=N,rate=R,concurrency=N,kinds=gaussian+motion,out=K,"
             "arg.NAME=VALUE")


@dataclass(frozen=True)
class ExternalSpec:
    """A parsed ``NAME=SPEC`` (see the module docstring)."""

    name: str
    target: str
    source: str  # "python" | "gradio"
    api_name: str | None = None
    nonblind: bool = False
    kinds: tuple[str, ...] = tuple(STRENGTHS)
    timeout: float = DEFAULT_TIMEOUT
    retries: int = DEFAULT_RETRIES
    rate: float | None = None
    concurrency: int = DEFAULT_CONCURRENCY
    output: int | None = None
    extra: tuple[tuple[str, object], ...] = ()
    text: str = field(default="", compare=False)

    @property
    def label(self) -> str:
        where = self.target if self.source == "python" else f"{self.target}#{self.api_name}"
        return f"{self.name} (external: {where})"


def parse_external(text: str, *, concurrency: int | None = None, timeout: float | None = None) -> ExternalSpec:
    """Parse ``NAME=SPEC`` (module docstring); ``concurrency``/``timeout`` are defaults a spec option overrides.

    Raises:
        ValueError: saying what is wrong and showing the syntax.
    """
    name, sep, rest = str(text).strip().partition("=")
    name, rest = name.strip(), rest.strip()
    if not sep or not rest:
        raise ValueError(f"external restorer {text!r} must be NAME=SPEC: {SPEC_HELP}")
    if not _NAME.fullmatch(name):
        raise ValueError(f"external restorer name {name!r} may hold letters, digits, '_', '.', '-' only")
    if name.lower() in ("nan", "na", "null", "none", "n/a") and name != "none":
        raise ValueError(f"external restorer name {name!r} reads as a missing value in CSV reports; pick another")
    if rest.startswith(("http://", "https://")) or (not _PYTHON.match(rest) and "/" in rest.partition("#")[0]):
        target, hash_, fragment = rest.partition("#")
        api_name, _, options = fragment.partition("?")
        if not hash_ or not api_name.strip("/"):
            raise ValueError(f"external restorer {name!r}: add the endpoint after '#', e.g. {target}#/predict "
                             "(the app's 'Use via API' page lists its api_names)")
        if not target.startswith(("http://", "https://")) and not _SPACE.fullmatch(target):
            raise ValueError(f"external restorer {name!r}: {target!r} is neither an http(s) URL nor a "
                             f"Hugging Face Space id owner/space; {SPEC_HELP}")
        spec = ExternalSpec(name, target, "gradio", "/" + api_name.strip().lstrip("/"), text=str(text))
    else:
        target, _, options = rest.partition("?")
        if not _PYTHON.fullmatch(target):
            raise ValueError(f"external restorer {name!r}: cannot read {rest!r}; {SPEC_HELP}")
        spec = ExternalSpec(name, target, "python", text=str(text))
    if concurrency is not None:
        spec = replace(spec, concurrency=int(concurrency))
    if timeout is not None:
        spec = replace(spec, timeout=float(timeout))
    spec = _apply_options(spec, options)
    if spec.concurrency < 1 or spec.timeout <= 0 or spec.retries < 0 or (spec.rate is not None and spec.rate <= 0):
        raise ValueError(f"external restorer {name!r}: concurrency >= 1, timeout > 0, retries >= 0 and rate > 0 "
                         f"required, got {spec}")
    return spec


def _apply_options(spec: ExternalSpec, options: str) -> ExternalSpec:
    casts = {"timeout": float, "retries": int, "rate": float, "concurrency": int, "out": int}
    for item in filter(None, (o.strip() for o in options.split(","))):
        key, eq, value = item.partition("=")
        try:
            if key == "nonblind" and not eq:
                spec = replace(spec, nonblind=True)
            elif key == "kinds" and eq:
                kinds = tuple(k for k in value.split("+") if k)
                bad = [k for k in kinds if k not in STRENGTHS]
                if bad or not kinds:
                    raise ValueError(f"unknown degradation(s) {bad}; choose from {sorted(STRENGTHS)}")
                spec = replace(spec, kinds=kinds)
            elif key in casts and eq:
                spec = replace(spec, **{"output" if key == "out" else key: casts[key](value)})
            elif key.startswith("arg.") and eq and key[4:].isidentifier():
                spec = replace(spec, extra=(*spec.extra, (key[4:], _scalar(value))))
            else:
                raise ValueError(f"unknown option {item!r}")
        except ValueError as exc:
            raise ValueError(f"external restorer {spec.name!r}: {exc}; options are nonblind, timeout=S, "
                             "retries=N, rate=R, concurrency=N, kinds=a+b, out=K, arg.NAME=VALUE") from None
    return spec


def _scalar(value: str):
    """``arg.`` values: JSON numbers/true/false/null as such, anything else as the string itself."""
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        return value
    return parsed if isinstance(parsed, (int, float, bool)) or parsed is None else value


def app_specs(text: str | None) -> list[str]:
    """The specs typed into the app's "external restorer" field: one per line, Gradio apps and Spaces only.

    A line may omit ``NAME=`` (the restorer is then called ``external``, ``external-2``...). Python callables
    are refused: the app must not import code named in a web form; use the command line for them.

    Raises:
        ValueError: a line that does not parse, or a Python callable.
    """
    specs: list[str] = []
    for k, line in enumerate(filter(None, (ln.strip() for ln in (text or "").splitlines()))):
        head, eq, _ = line.partition("=")
        named = eq and _NAME.fullmatch(head) and not head.startswith(("http", "https")) and "/" not in head
        spec = line if named else f"external{'' if k == 0 else f'-{k + 1}'}={line}"
        if parse_external(spec).source == "python":
            raise ValueError(f"{line!r} names a Python callable; the app only calls Gradio apps and Spaces "
                             "(URL#/api_name or owner/space#/api_name). Audit Python callables from the command "
                             "line: python -m audit --external NAME=module:callable")
        specs.append(spec)
    return specs
