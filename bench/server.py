"""The app launched as users get it (``python app.py``), in its own process, on loopback only.

Used by the load benchmark (RSS of the server process, no client in the same process) and the privacy test
(its own ``GRADIO_TEMP_DIR`` and ``TMPDIR``, searched on disk afterwards, and a real shutdown).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent

__all__ = ["AppProcess", "app_process", "free_port", "rss_mb"]


def free_port() -> int:
    """A TCP port nobody listens on right now (loopback)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mb(pid: int) -> float:
    """Resident set size of a process in MB (Linux ``/proc``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


@dataclass
class AppProcess:
    """A running ``python app.py``: its URL, process and private temp folders."""

    url: str
    proc: subprocess.Popen
    gradio_tmp: Path
    tmpdir: Path
    log: Path

    def rss_mb(self) -> float:
        return rss_mb(self.proc.pid)

    def stop(self, timeout: float = 60) -> int:
        """Stop it as Ctrl-C does (Gradio's shutdown deletes its cache); returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@contextmanager
def app_process(folder: Path, env: dict[str, str] | None = None, timeout: float = 240) -> Iterator[AppProcess]:
    """Run ``python app.py`` on 127.0.0.1 with ``GRADIO_TEMP_DIR`` and ``TMPDIR`` inside ``folder``.

    Args:
        folder: an empty folder for the temp folders and the server log.
        env: extra environment variables.
        timeout: seconds to wait for the page to answer.
    """
    gradio_tmp, tmpdir = folder / "gradio", folder / "tmp"
    gradio_tmp.mkdir(parents=True, exist_ok=True)
    tmpdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    full_env = {**os.environ, "GRADIO_TEMP_DIR": str(gradio_tmp), "TMPDIR": str(tmpdir),
                "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1",
                "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1", **(env or {})}
    log = folder / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=full_env, stdout=out,
                                stderr=subprocess.STDOUT)
    app = AppProcess(f"http://127.0.0.1:{port}/", proc, gradio_tmp, tmpdir, log)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"app.py exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(app.url, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"app.py did not answer within {timeout:.0f} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield app
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
