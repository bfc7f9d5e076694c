"""Calling an external restorer: failures as row statuses, output checks, the Python and Gradio callers, and the
:class:`Runner` that bounds calls in flight, rate-limits, retries and times out.
"""

from __future__ import annotations

import concurrent.futures
import importlib
import inspect
import math
import shutil
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import httpx
import numpy as np

from deblur.degrade import as_image, to_uint8
from deblur.io import ImageError, decode_image, encode_png
from deblur.restore.external.spec import FAILURE_REASONS, RETRYABLE, ExternalSpec

__all__ = ["GradioCaller", "PythonCaller", "RestoreFailure", "RestoreOutcome", "Runner", "to_output_image"]


class RestoreFailure(Exception):
    """A restorer call that failed for a known reason; becomes the row status ``error:<reason>``."""

    def __init__(self, reason: str, detail: str):
        if reason not in FAILURE_REASONS:
            raise ValueError(f"unknown failure reason {reason!r}; one of {sorted(FAILURE_REASONS)}")
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail

    @property
    def status(self) -> str:
        return f"error:{self.reason}"


@dataclass(frozen=True)
class RestoreOutcome:
    """What one restore call gave: an image (``status == "ok"``) or a failure status, a note and its time."""

    image: np.ndarray | None
    status: str = "ok"
    note: str = ""
    seconds: float = math.nan

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def to_output_image(out, shape: tuple[int, ...]) -> tuple[np.ndarray, str]:
    """A restorer's raw output as ``HxWx3`` float32 of ``shape`` (resized if needed) and a note.

    Raises:
        RestoreFailure: ``not_image``, ``wrong_shape`` or ``bad_values``.
    """
    if out is None or isinstance(out, (str, bytes, dict, int, float, bool)):
        raise RestoreFailure("not_image", f"got {type(out).__name__} {str(out)[:80]!r}, expected an image array")
    try:
        arr = np.asarray(out)
    except Exception as exc:  # noqa: BLE001 - any object that numpy cannot turn into an array
        raise RestoreFailure("not_image", f"cannot read {type(out).__name__} as an array: {exc}") from None
    if arr.dtype == object or arr.ndim == 0 or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise RestoreFailure("not_image", f"got {type(out).__name__} of dtype {arr.dtype}, expected an image array")
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)) or min(arr.shape[:2]) < 8:
        raise RestoreFailure("wrong_shape", f"got shape {arr.shape}, expected HxWx3 (at least 8x8)")
    note = ""
    if np.issubdtype(arr.dtype, np.integer) and arr.dtype not in (np.uint8, np.uint16):
        if arr.min() < 0 or arr.max() > 255:
            raise RestoreFailure("bad_values", f"integer output in [{arr.min()}, {arr.max()}]; expected 0..255")
        arr, note = arr.astype(np.uint8), f"{out.dtype} output read as uint8"
    try:
        img = as_image(arr, name="output")
    except (TypeError, ValueError) as exc:
        raise RestoreFailure("bad_values", str(exc)) from None
    h, w = shape[:2]
    if img.shape[:2] != (h, w):
        shrink = img.shape[0] * img.shape[1] > h * w
        resized = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
        img = np.clip(resized, 0.0, 1.0).astype(np.float32)
        note = "; ".join(filter(None, [note, f"output {arr.shape[1]}x{arr.shape[0]} resized to {w}x{h}"]))
    return img, note


def _load_callable(spec: ExternalSpec) -> Callable:
    module_name, _, attr = spec.target.partition(":")
    try:
        obj = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"external restorer {spec.name!r}: cannot import {module_name!r} ({exc}); install it or "
                         "add its folder to PYTHONPATH") from exc
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"external restorer {spec.name!r}: {module_name!r} has no {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"external restorer {spec.name!r}: {spec.target} is a {type(obj).__name__}, not callable")
    return obj


def _keywords(fn: Callable, spec: ExternalSpec) -> tuple[bool, bool]:
    """Whether ``fn`` accepts ``kind=`` and ``strength=``; checks it can be called as a restorer."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # some builtins have no signature: call with the image only
        return False, False
    var_kw = any(p.kind is p.VAR_KEYWORD for p in params.values())
    positional = [p for p in params.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if not positional and not any(p.kind is p.VAR_POSITIONAL for p in params.values()):
        raise ValueError(f"external restorer {spec.name!r}: {spec.target} takes no positional image argument")
    given = {"kind", "strength", *(k for k, _ in spec.extra)}
    required = [p.name for p in positional[1:] if p.default is p.empty and p.name not in given]
    if required:
        raise ValueError(f"external restorer {spec.name!r}: {spec.target} requires {required} besides the image; "
                         "facedrift passes the image and, if accepted, kind= and strength= (with ?nonblind); give "
                         "fixed values with ?arg.NAME=VALUE")
    unknown = [k for k, _ in spec.extra if k not in params and not var_kw]
    if unknown:
        raise ValueError(f"external restorer {spec.name!r}: {spec.target} has no parameter(s) {unknown}")
    takes_kind = var_kw or "kind" in params
    takes_strength = var_kw or "strength" in params
    if spec.nonblind and not takes_strength:
        raise ValueError(f"external restorer {spec.name!r} is declared nonblind but {spec.target} has no strength= "
                         "parameter; add one or drop ?nonblind")
    return takes_kind, spec.nonblind



class PythonCaller:
    """Calls an importable callable in a daemon thread, so a hung call can be abandoned at the timeout.

    Python threads cannot be killed: a call past its timeout keeps running in the background (its row says
    ``error:timeout``) until it returns or the process exits.
    """

    def __init__(self, spec: ExternalSpec):
        self.spec = spec
        self.fn = _load_callable(spec)
        self.takes_kind, self.takes_strength = _keywords(self.fn, spec)

    def call(self, img_u8: np.ndarray, kind: str, strength: float | None, timeout: float):
        """``(raw output, note)``; raises :class:`RestoreFailure` (``exception`` or ``timeout``)."""
        kwargs = {}
        if self.takes_kind:
            kwargs["kind"] = kind
        if self.takes_strength:
            kwargs["strength"] = strength
        kwargs.update(self.spec.extra)  # a fixed arg.NAME=VALUE wins
        box: dict = {}

        def target():
            try:
                box["out"] = self.fn(img_u8, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - reported as the row's status below
                box["exc"] = exc

        thread = threading.Thread(target=target, daemon=True, name=f"external-{self.spec.name}")
        thread.start()
        thread.join(timeout)
        if thread.is_alive():
            raise RestoreFailure("timeout", f"{self.spec.target} gave no answer within {timeout:g} s (the call "
                                            "keeps running in a background thread: threads cannot be stopped)")
        if "exc" in box:
            exc = box["exc"]
            raise RestoreFailure("exception", f"{type(exc).__name__}: {exc}")
        return box["out"], ""

    def close(self) -> None:
        pass


class GradioCaller:
    """Calls one endpoint of a Gradio app or Space through ``gradio_client``, the face sent as a PNG file.

    The PNG lives in a private temporary folder only for the call; the output is fetched into memory (the
    client downloads nothing to disk). Connecting checks the endpoint exists and takes what we send.
    """

    def __init__(self, spec: ExternalSpec):
        # gradio_client is imported here, not at the top: only app specs need it, and Python-callable
        # restorers (and workers that unpickle them) should not pay its import.
        from gradio_client import Client

        self.spec = spec
        self.tmp = Path(tempfile.mkdtemp(prefix="facedrift-external-"))
        self._cleanup = weakref.finalize(self, shutil.rmtree, self.tmp, True)
        try:
            self.client = Client(spec.target, verbose=False, download_files=False, analytics_enabled=False,
                                 httpx_kwargs={"timeout": spec.timeout})
            endpoints = self.client.view_api(return_format="dict", print_info=False)["named_endpoints"]
        except Exception as exc:  # noqa: BLE001 - connection, DNS, auth, not a Gradio app...
            self._cleanup()
            raise ValueError(f"external restorer {spec.name!r}: cannot connect to {spec.target} "
                             f"({type(exc).__name__}: {exc}); is the app running (or the Space id right, and are "
                             "you online)?") from exc
        if spec.api_name not in endpoints:
            self._cleanup()
            raise ValueError(f"external restorer {spec.name!r}: {spec.target} has no endpoint {spec.api_name!r}; "
                             f"it has {sorted(endpoints)} (write NAME={spec.target}#<one of them>)")
        params = endpoints[spec.api_name]["parameters"]
        sent = 3 if spec.nonblind else 1
        names = [p.get("parameter_name") for p in params]
        extra = dict(spec.extra)
        missing = [p.get("parameter_name") for p in params[sent:]
                   if not p.get("parameter_has_default") and p.get("parameter_name") not in extra]
        unknown = [k for k in extra if k not in names[sent:]]
        if len(params) < sent or missing or unknown:
            self._cleanup()
            what = ("(image, kind, strength)" if spec.nonblind
                    else "(image) only; add ?nonblind to also send kind, strength")
            raise ValueError(f"external restorer {spec.name!r}: {spec.api_name} takes {len(params)} inputs {names}; "
                             f"facedrift sends {what}"
                             + (f"; give the required {missing} with ?arg.NAME=VALUE" if missing else "")
                             + (f"; it has no parameter(s) {unknown}" if unknown else ""))

    def call(self, img_u8: np.ndarray, kind: str, strength: float | None, timeout: float):
        """``(image array, note)``; raises :class:`RestoreFailure` with the reason."""
        # gradio_client lazily, as in __init__: only app specs need it
        from gradio_client import handle_file
        from gradio_client.exceptions import AppError
        from gradio_client.utils import QueueError, TooManyRequestsError

        path = self.tmp / f"{uuid.uuid4().hex}.png"
        path.write_bytes(encode_png(img_u8))
        args = (handle_file(str(path)), kind, strength) if self.spec.nonblind else (handle_file(str(path)),)
        try:
            job = self.client.submit(*args, **dict(self.spec.extra), api_name=self.spec.api_name)
            try:
                result = job.result(timeout=timeout)
            except concurrent.futures.TimeoutError:
                job.cancel()
                raise RestoreFailure("timeout", f"{self.spec.target}{self.spec.api_name} gave no answer within "
                                                f"{timeout:g} s") from None
        except RestoreFailure:
            raise
        except AppError as exc:
            raise RestoreFailure("exception", f"the app raised: {exc}") from None
        except (TooManyRequestsError, QueueError) as exc:
            raise RestoreFailure("rate_limited", f"{type(exc).__name__}: {exc}") from None
        except httpx.HTTPStatusError as exc:
            code = exc.response.status_code
            reason = "rate_limited" if code == 429 else "connection" if code >= 500 else "exception"
            raise RestoreFailure(reason, f"HTTP {code}: {exc}") from None
        except (httpx.TransportError, ConnectionError) as exc:
            raise RestoreFailure("connection", f"{type(exc).__name__}: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - anything else the client raises is the call failing
            raise RestoreFailure("exception", f"{type(exc).__name__}: {exc}") from None
        finally:
            path.unlink(missing_ok=True)
        return self._fetch(result, timeout)

    def _fetch(self, result, timeout: float):
        note = ""
        if isinstance(result, (list, tuple)):
            if self.spec.output is not None:
                if not -len(result) <= self.spec.output < len(result):
                    raise RestoreFailure("not_image", f"out={self.spec.output} but the endpoint returned "
                                                      f"{len(result)} outputs")
                result = result[self.spec.output]
            else:
                files = [i for i, r in enumerate(result) if isinstance(r, dict) and r.get("url")]
                if not files:
                    raise RestoreFailure("not_image", f"the endpoint returned {len(result)} outputs, none a file: "
                                                      f"{str(result)[:120]}")
                if len(result) > 1:
                    note = f"used output {files[0]} of {len(result)} (choose with out=K)"
                result = result[files[0]]
        if not (isinstance(result, dict) and result.get("url")):
            raise RestoreFailure("not_image", f"the endpoint returned {type(result).__name__} "
                                              f"{str(result)[:120]!r}, not an image file")
        try:
            response = httpx.get(result["url"], headers=self.client.headers, timeout=timeout)
            response.raise_for_status()
        except httpx.HTTPStatusError as exc:
            raise RestoreFailure("connection", f"fetching the output: HTTP {exc.response.status_code}") from None
        except httpx.HTTPError as exc:
            raise RestoreFailure("connection", f"fetching the output: {type(exc).__name__}: {exc}") from None
        try:
            return decode_image(response.content, what=f"output of {self.spec.name}"), note
        except ImageError as exc:
            raise RestoreFailure("not_image", str(exc)) from None

    def close(self) -> None:
        self._cleanup()


class Runner:
    """Everything one external spec shares across degradation kinds: its caller, a thread pool bounding the
    calls in flight to ``spec.concurrency``, the rate limit and the retry policy.

    Picklable (only the spec travels): a worker process reconnects on first use.
    """

    def __init__(self, spec: ExternalSpec, caller=None):
        self.spec = spec
        self._caller = caller
        self._lock = threading.Lock()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._next_call = 0.0

    def __getstate__(self):
        return {"spec": self.spec}

    def __setstate__(self, state):
        self.__init__(state["spec"])

    def connect(self):
        """The caller, created on first use (imports the callable / connects to the app); raises ValueError."""
        with self._lock:
            if self._caller is None:
                self._caller = (PythonCaller if self.spec.source == "python" else GradioCaller)(self.spec)
            return self._caller

    def run(self, imgs: Sequence[np.ndarray], kind: str, strengths: Sequence[float | None]) -> list[RestoreOutcome]:
        """One outcome per image, in order; calls run concurrently (at most ``spec.concurrency`` at once)."""
        caller = self.connect()  # connect (or import) once, before the threads start
        if len(imgs) == 1:
            return [self._one(caller, imgs[0], kind, strengths[0])]
        with self._lock:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(self.spec.concurrency,
                                                                   thread_name_prefix=f"external-{self.spec.name}")
            pool = self._pool
        futures = [pool.submit(self._one, caller, img, kind, s) for img, s in zip(imgs, strengths, strict=True)]
        return [f.result() for f in futures]

    def _wait_for_rate(self) -> None:
        if self.spec.rate is None:
            return
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next_call)
            self._next_call = slot + 1.0 / self.spec.rate
        time.sleep(max(0.0, slot - now))

    def _one(self, caller, img: np.ndarray, kind: str, strength: float | None) -> RestoreOutcome:
        start = time.perf_counter()
        img_u8 = to_uint8(img)
        tries = self.spec.retries + 1
        for attempt in range(tries):
            self._wait_for_rate()
            try:
                raw, note = caller.call(img_u8, kind, strength, self.spec.timeout)
                image, shape_note = to_output_image(raw, img_u8.shape)
                if attempt:
                    shape_note = "; ".join(filter(None, [shape_note, f"succeeded on try {attempt + 1}"]))
                return RestoreOutcome(image, "ok", "; ".join(filter(None, [note, shape_note])),
                                      time.perf_counter() - start)
            except RestoreFailure as exc:
                if exc.reason in RETRYABLE and attempt + 1 < tries:
                    time.sleep(min(0.5 * 2 ** attempt, 10.0))
                    continue
                detail = exc.detail if attempt == 0 else f"{exc.detail} (after {attempt + 1} tries)"
                return RestoreOutcome(None, exc.status, detail[:300], time.perf_counter() - start)
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        """Stop the thread pool and drop the connection (its temporary folder goes); a later call reconnects."""
        with self._lock:
            pool, self._pool = self._pool, None
            caller, self._caller = self._caller, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        if caller is not None:
            caller.close()
