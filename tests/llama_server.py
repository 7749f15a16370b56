"""Start a real llama.cpp server (``python -m mollia_core serve``) on loopback, for tests and benchmarks.

``with llama_server(gguf_path) as server:`` runs the user-facing ``serve`` command (llama.cpp's
own C++ server from the prebuilt xllamacpp wheel) on 127.0.0.1 at a free port with an explicit
thread count (DESIGN §2: prompt evaluation otherwise uses every core), waits until
``/v1/models`` answers, and always terminates the process, killing it if it does not stop.
The server's output goes to a log file whose tail is shown if it fails to start.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import httpx

LOOPBACK = "127.0.0.1"
REPO = Path(__file__).resolve().parent.parent  # where ``python -m mollia_core`` runs


@dataclass(frozen=True)
class LlamaServer:
    base_url: str  # ends in /v1
    model: str  # the alias the server serves the model under
    process: subprocess.Popen
    log_path: Path


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def _stop(process: subprocess.Popen, grace_s: float = 10.0) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=grace_s)


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextlib.contextmanager
def llama_server(
    model_path: str | Path,
    *,
    alias: str = "smollm2",
    api_key: str | None = None,
    n_ctx: int = 1024,
    n_threads: int = 2,
    parallel: int = 1,
    startup_timeout_s: float = 120.0,
    log_dir: str | Path | None = None,
) -> Iterator[LlamaServer]:
    """Serve ``model_path`` on loopback for the duration of the ``with`` block."""
    port = free_loopback_port()
    log_dir = Path(log_dir) if log_dir is not None else Path(tempfile.mkdtemp(prefix="mollia-llama-server-"))
    log_path = log_dir / f"llama-server-{port}.log"
    command = [
        sys.executable, "-m", "mollia_core", "serve",
        "--model", str(model_path), "--alias", alias,
        "--host", LOOPBACK, "--port", str(port),
        "--threads", str(n_threads), "--ctx", str(n_ctx), "--parallel", str(parallel),
    ]
    if api_key is not None:
        command += ["--api-key", api_key]
    base_url = f"http://{LOOPBACK}:{port}/v1"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   cwd=REPO)
    try:
        deadline = time.monotonic() + startup_timeout_s
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"llama.cpp server exited with code {process.returncode} while starting:\n{_log_tail(log_path)}"
                )
            try:
                if httpx.get(f"{base_url}/models", headers=headers, timeout=2.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"llama.cpp server did not answer within {startup_timeout_s:.0f} s:\n{_log_tail(log_path)}"
                )
            time.sleep(0.25)
        yield LlamaServer(base_url=base_url, model=alias, process=process, log_path=log_path)
    finally:
        _stop(process)
