"""Serve a GGUF model over an OpenAI-compatible HTTP API: llama.cpp's own C++ server (xllamacpp).

``python -m mollia_core serve --model FILE.gguf`` (or ``--embedded smollm2-135m``) runs it in
this process until Ctrl-C or SIGTERM; :class:`~mollia_core.evidence.server.OpenAICompatibleSource`
then talks to ``http://HOST:PORT/v1``. The ``xllamacpp`` wheel is prebuilt and portable (no
compile step at install, no code built for the installing machine's CPU), unlike a server built
natively from source, which can crash on CPUs it was not built on.

The server's sampling defaults are set to temperature/top-p alone (``top_k`` and ``min_p``
off), so the sampled answers follow the request's temperature and top_p as the paper's
decoding does (DESIGN §2), not llama.cpp's extra top-k 40 / min-p 0.05 filters.
"""

from __future__ import annotations

import errno
import signal
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .source import EvidenceError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_CONTEXT = 4096
_GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class ServeSettings:
    """What ``serve`` starts: one GGUF model on one address."""

    model_path: Path
    alias: str
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    threads: int = 1
    api_key: str | None = None
    context: int = DEFAULT_CONTEXT
    parallel: int = 1

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"


def check_settings(settings: ServeSettings) -> None:
    """Refuse, with what to fix, what llama.cpp would only report as "failed to init server"."""
    path = settings.model_path
    if not path.is_file():
        raise EvidenceError(f"model file {path} not found: give the path of a .gguf file")
    with open(path, "rb") as handle:
        if handle.read(4) != _GGUF_MAGIC:
            raise EvidenceError(f"{path} is not a GGUF model file (it does not start with 'GGUF'): "
                                "give a .gguf file (llama.cpp's format)")
    for name, value in (("--threads", settings.threads), ("--ctx", settings.context),
                        ("--parallel", settings.parallel)):
        if value < 1:
            raise EvidenceError(f"{name} must be at least 1, got {value}")
    if not 0 <= settings.port <= 65535:
        raise EvidenceError(f"--port must be between 0 and 65535, got {settings.port}")
    if settings.api_key is not None and not settings.api_key.strip():
        raise EvidenceError("--api-key is empty: give a key, or leave the option out for no key")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((settings.host, settings.port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise EvidenceError(f"port {settings.port} on {settings.host} is already in use: "
                                    "stop what listens there or pick another --port") from None
            raise EvidenceError(f"cannot listen on {settings.host}:{settings.port} ({error.strerror}): "
                                "give a local address, e.g. --host 127.0.0.1") from None


def start_server(settings: ServeSettings):
    """Load the model and start llama.cpp's HTTP server in background threads; return it.

    The server runs as long as the returned object (and this process) lives.
    """
    check_settings(settings)
    try:
        import xllamacpp
    except ImportError as error:
        raise EvidenceError(f"the llama.cpp server is not installed ({error}): "
                            "pip install -r requirements.txt (it pins xllamacpp)") from None
    params = xllamacpp.CommonParams()
    params.model.path = str(settings.model_path)
    params.model_alias = {settings.alias}
    params.hostnames = [settings.host]
    params.port = settings.port
    params.n_ctx = settings.context * settings.parallel  # each parallel slot gets `context` tokens
    params.n_parallel = settings.parallel
    params.cpuparams.n_threads = settings.threads
    params.cpuparams_batch.n_threads = settings.threads  # prompt evaluation too (else: every core)
    params.sampling.top_k = 0
    params.sampling.min_p = 0.0
    if settings.api_key:
        params.api_keys = [settings.api_key]
    try:
        return xllamacpp.Server(params)
    except RuntimeError as error:
        raise EvidenceError(f"llama.cpp's server did not start for {settings.model_path} ({error}); "
                            "its log above says why") from None


def serve(settings: ServeSettings, say: Callable[[str], None] = print,
          stop: threading.Event | None = None) -> None:
    """Serve until Ctrl-C or SIGTERM (or until ``stop`` is set), then return."""
    stop = stop or threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server = start_server(settings)
        key_note = " (API key required)" if settings.api_key else ""
        say(f"serving {settings.alias!r} ({settings.model_path}) at {settings.base_url}{key_note}; "
            "Ctrl-C stops it")
        while not stop.wait(0.5):
            pass
        del server
        say("server stopped")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

