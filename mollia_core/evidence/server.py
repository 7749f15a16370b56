"""Evidence from an OpenAI-compatible inference server (vLLM, llama.cpp's server, Ollama).

This is the scale-out path: many texts and big models go to a server (vLLM across
GPUs, or llama.cpp's server -- ``python -m mollia_core serve`` -- on a workstation) while the
dashboard stays the same. Per text and label set (DESIGN §1, Eq. 1-2):

* z, exactly: for each label, ``POST /v1/completions`` with ``prompt + lead + label``,
  ``echo=true`` and ``logprobs``: the server returns the log-probability of every
  prompt token, and the label's tokens are summed. The K requests share the prompt, so
  a server's prefix cache (llama.cpp's KV-cache reuse, vLLM's prefix caching) evaluates
  it once. Labels sharing a first token are still told apart. z is renormalised over
  the labels (Eq. 1).
* z over surface forms (``surface_forms=True``, the default, as in the embedded engine): a
  label's z sums P(form) over the answers ``parsing.surface_form_answers`` lists for it (case,
  singular/plural, an opening quote, the leading space toggled), scored like the label itself;
  a form is summed only if its token sequence (the echoed or walked tokens) is neither a prefix
  nor an extension of one summed already (``parsing.overlaps_any``), so nothing counts twice.
  ``meta["canonical_label_probs"]`` keeps z over the labels as written, ``meta["summed_forms"]``
  the answers summed per label.
* z, fallback (servers that cannot echo the prompt's log-probabilities -- llama.cpp's
  server ignores ``echo`` -- or echo them wrongly: checked once, see ``_resolve_z_method``):
  "stepwise" scoring walks each
  label's text through the server's top next-token log-probabilities — the longest top
  token the label's remaining text starts with, then the top tokens after prompt + that
  token, and so on — summing log-probabilities. Exact whenever each label token is among
  the top ``top_logprobs`` (labels sharing a first token are told apart at the next step;
  a label that falls out of the top tokens gets z = 0). Prefixes shared by labels are
  requested once. The method used is recorded in every record's ``meta["z_method"]``
  ("exact" or "stepwise").
* c: T answers sampled at temperature/top-p, stopping at the end of the line — with
  ``n=T`` in one request where the server honours ``n`` (vLLM), else T concurrent
  requests (llama.cpp's server refuses ``n`` > 1) — parsed by :func:`parsing.vote_shares`
  (Eq. 2); the raw answers are kept.

Servers only see completion prompts: the template is rendered without a chat template
(``PromptTemplate.render`` with no tokenizer), ending in ``"\\nCategory:"``, since the
OpenAI API gives no portable way to fetch a model's chat template and ``echo`` is only
offered by the completions endpoint.

The API key is sent as a Bearer header and kept in a :class:`_Secret`; it never
appears in ``repr``, ``cache_key``, ``settings()``, records, log lines or error messages.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import zlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Sequence
from urllib.parse import urlsplit, urlunsplit

import httpx
import numpy as np

from .parsing import overlaps_any, surface_form_answers, vote_shares
from .prompt import PromptTemplate, check_labels
from .record import EvidenceRecord
from .source import Cancelled, EvidenceError, EvidenceSource, Progress, ProgressCallback, resolve_text_ids

logger = logging.getLogger(__name__)

Z_METHODS = ("auto", "exact", "stepwise")
#: Statuses worth retrying: overload, rate limits and transient gateway errors.
_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
#: Top log-probabilities per step of the stepwise fallback (vLLM's default cap is 20).
DEFAULT_TOP_LOGPROBS = 20
_MAX_RETRY_AFTER_S = 60.0
_START_HINT = (
    "Is the server running? Start one with e.g.\n"
    "    python -m mollia_core serve --model <file.gguf> --port 8000   (llama.cpp's server)\n"
    "    vllm serve <model> --port 8000\n"
    "    ollama serve\n"
    "and give its base URL, e.g. http://127.0.0.1:8000/v1 (Ollama: http://127.0.0.1:11434/v1)."
)
_LOGPROBS_HINT = (
    "Enable them: llama.cpp's server (python -m mollia_core serve --model <file.gguf>) returns them "
    "for every request; vLLM returns them by default (--max-logprobs caps how many "
    f"per token, {DEFAULT_TOP_LOGPROBS} by default); Ollama's OpenAI API returns "
    "them only in recent versions (update it, or serve the model with vLLM or llama.cpp)."
)


class _Secret:
    """Holds the API key so that no repr, vars() or log line can show it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "'***'"

    __str__ = __repr__

    def __reduce__(self):  # never pickled into a project file or a cache
        raise TypeError("the API key is not serialisable; pass it again when the source is rebuilt")


class _ServerError(EvidenceError):
    """The server answered a request with an error status that retrying does not fix."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class _NoLogprobs(Exception):
    """A completion came back without the log-probabilities a z method needs."""


def normalise_base_url(base_url: str) -> str:
    """``http://host:port`` or ``.../v1`` (with or without a trailing slash) -> ``.../v1``.

    Raises EvidenceError for a URL that is not http(s) or carries a password (pass the key
    as ``api_key``, so that it never ends up in a cache key or an exported project).
    """
    if not isinstance(base_url, str) or not base_url.strip():
        raise EvidenceError("the server's base URL is empty: give e.g. http://127.0.0.1:8000/v1")
    parts = urlsplit(base_url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EvidenceError(
            f"{base_url!r} is not an http(s) URL: give the server's base URL, e.g. http://127.0.0.1:8000/v1"
        )
    if parts.username or parts.password:
        raise EvidenceError(
            "the server URL must not contain a user name or password: pass the API key as api_key "
            "(it is sent as a Bearer header and never stored)"
        )
    path = parts.path.rstrip("/")
    if not path.endswith("/v1"):
        path += "/v1"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


@dataclass
class _TextJob:
    """The in-flight requests of one text: K label scorings and the sampling request(s)."""

    prompt: str
    answers: tuple[list[str], list[int]]  # what the scores are of: answer texts and their labels
    scores: list[Future]
    samples: list[Future]
    futures: list[Future] = field(init=False)

    def __post_init__(self) -> None:
        self.futures = self.scores + self.samples

    def cancel(self) -> None:
        for future in self.futures:
            future.cancel()


class OpenAICompatibleSource(EvidenceSource):
    """Evidence from a model served behind an OpenAI-compatible API (vLLM, llama.cpp, Ollama).

    Args:
        base_url: the server's API root, e.g. ``http://127.0.0.1:8000/v1`` (``/v1`` is added
            when missing).
        model: the model name the server serves (``GET /v1/models`` lists them).
        api_key: optional key, sent as ``Authorization: Bearer``; never logged or exported.
        template: the prompt (default: the paper's); rendered as a completion prompt.
        n_samples: T, sampled answers per text for the vote shares c (Eq. 2).
        temperature, top_p, max_new_tokens: decoding of the sampled answers.
        max_concurrency: most requests in flight at once.
        timeout_s: per-request timeout (connecting takes at most 10 s of it).
        retries, backoff_s: connection errors, timeouts, 429 and 5xx are retried up to
            ``retries`` times, waiting ``backoff_s * 2**attempt`` (or the server's Retry-After).
        random_state: seeds the sampled answers (per text and sample), so reruns repeat.
        name: short name shown to users (default: the model name).
        z_method: "auto" (exact label scoring where the server can echo log-probabilities,
            else the stepwise fallback), "exact" or "stepwise".
        top_logprobs: top next tokens per step of the stepwise fallback (servers cap it: vLLM
            at 20 unless started with a larger ``--max-logprobs``).
        surface_forms: z sums each label's surface forms (see module doc); False: the label as
            written only. Forms cost requests: one per form with exact scoring, one per new
            prefix with stepwise scoring.
        extra_body: extra fields merged into every completion request (e.g. ``{"top_k": 0,
            "min_p": 0}`` for a llama.cpp server started elsewhere, to sample with temperature/top-p
            alone; ``python -m mollia_core serve`` makes that its default).
        transport: an ``httpx`` transport, for tests of the retry logic.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        template: PromptTemplate | None = None,
        n_samples: int = 10,
        temperature: float = 0.7,
        top_p: float = 0.9,
        max_new_tokens: int = 8,
        max_concurrency: int = 8,
        timeout_s: float = 60,
        retries: int = 3,
        backoff_s: float = 0.5,
        random_state: int = 0,
        name: str | None = None,
        *,
        z_method: str = "auto",
        top_logprobs: int = DEFAULT_TOP_LOGPROBS,
        surface_forms: bool = True,
        extra_body: dict[str, Any] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = normalise_base_url(base_url)
        if not isinstance(model, str) or not model.strip():
            raise EvidenceError("no model name given: pass the name the server serves (GET /v1/models lists them)")
        self.model = model
        self._api_key = _Secret(api_key) if api_key else None
        self.template = template if template is not None else PromptTemplate()
        if n_samples < 0:
            raise EvidenceError(f"n_samples must be >= 0, got {n_samples}")
        if max_concurrency < 1:
            raise EvidenceError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if z_method not in Z_METHODS:
            raise EvidenceError(f"z_method must be one of {Z_METHODS}, got {z_method!r}")
        if retries < 0 or backoff_s < 0 or timeout_s <= 0:
            raise EvidenceError("retries and backoff_s must be >= 0 and timeout_s > 0")
        self.n_samples = int(n_samples)
        self.temperature = float(temperature)
        self.top_p = float(top_p)
        self.max_new_tokens = int(max_new_tokens)
        self.max_concurrency = int(max_concurrency)
        self.timeout_s = float(timeout_s)
        self.retries = int(retries)
        self.backoff_s = float(backoff_s)
        self.random_state = int(random_state)
        self.name = name or model
        self.z_method = z_method
        if top_logprobs < 1:
            raise EvidenceError(f"top_logprobs must be >= 1, got {top_logprobs}")
        self.top_logprobs = int(top_logprobs)
        self.surface_forms = bool(surface_forms)
        self.extra_body = dict(extra_body or {})
        self._transport = transport
        self._client: httpx.Client | None = None
        self._client_lock = threading.Lock()
        self._served_models: tuple[str, ...] | None = None
        self._resolved_z_method: str | None = None if z_method == "auto" else z_method
        self._z_fallback: str | None = None  # why "auto" fell back to stepwise scoring
        self._honours_n: bool | None = None

    # ----------------------------------------------------------------- identity
    def __repr__(self) -> str:
        key = ", api_key='***'" if self._api_key is not None else ""
        return f"{type(self).__name__}(base_url={self.base_url!r}, model={self.model!r}{key}, name={self.name!r})"

    def settings(self) -> dict[str, Any]:
        """Everything needed to rebuild this source, except the API key (never exported)."""
        return {
            "kind": "openai-server",
            "base_url": self.base_url,
            "model": self.model,
            "api_key_set": self._api_key is not None,
            "template": self.template.as_key(),
            "n_samples": self.n_samples,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_new_tokens": self.max_new_tokens,
            "max_concurrency": self.max_concurrency,
            "timeout_s": self.timeout_s,
            "retries": self.retries,
            "backoff_s": self.backoff_s,
            "random_state": self.random_state,
            "name": self.name,
            "z_method": self.z_method,
            "top_logprobs": self.top_logprobs,
            "surface_forms": self.surface_forms,
            "extra_body": self.extra_body,
        }

    @property
    def cache_key(self) -> str:
        """Server, model, template and decoding settings: what changes the evidence (no key)."""
        return "openai-server:" + json.dumps(
            {
                "base_url": self.base_url,
                "model": self.model,
                "template": self.template.as_key(),
                "n_samples": self.n_samples,
                "temperature": self.temperature,
                "top_p": self.top_p,
                "max_new_tokens": self.max_new_tokens,
                "random_state": self.random_state,
                "z_method": self.z_method,
                "top_logprobs": self.top_logprobs,
                "surface_forms": self.surface_forms,
                "extra_body": self.extra_body,
            },
            sort_keys=True,
        )

    # -------------------------------------------------------------------- HTTP
    def _http(self) -> httpx.Client:
        with self._client_lock:
            if self._client is None:
                headers = {"Authorization": f"Bearer {self._api_key.reveal()}"} if self._api_key else {}
                self._client = httpx.Client(
                    base_url=self.base_url,
                    headers=headers,
                    timeout=httpx.Timeout(self.timeout_s, connect=min(10.0, self.timeout_s)),
                    limits=httpx.Limits(max_connections=self.max_concurrency,
                                        max_keepalive_connections=self.max_concurrency),
                    transport=self._transport,
                )
            return self._client

    def close(self) -> None:
        with self._client_lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def _request(self, method: str, path: str, payload: dict | None = None, retries: int | None = None) -> dict:
        """One API call with retries and exponential backoff; a clear EvidenceError otherwise."""
        retries = self.retries if retries is None else retries
        url = self.base_url + path
        for attempt in range(retries + 1):
            wait = self.backoff_s * 2**attempt
            try:
                response = self._http().request(method, path, json=payload)
            except httpx.TransportError as error:
                if attempt == retries:
                    raise EvidenceError(
                        f"cannot reach the inference server at {url} ({type(error).__name__}: {error}). "
                        + _START_HINT
                    ) from None
                logger.warning("%s %s failed (%s); retry %d/%d in %.1f s",
                               method, url, type(error).__name__, attempt + 1, retries, wait)
            else:
                if response.status_code in _RETRY_STATUS and attempt < retries:
                    wait = max(wait, _retry_after(response))
                    logger.warning("%s %s: HTTP %d; retry %d/%d in %.1f s",
                                   method, url, response.status_code, attempt + 1, retries, wait)
                else:
                    return self._json_or_raise(response, url)
            time.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def _json_or_raise(self, response: httpx.Response, url: str) -> dict:
        status = response.status_code
        if status in (401, 403):
            why = ("the API key was rejected: check it" if self._api_key is not None
                   else "the server needs an API key: pass api_key=...")
            raise _ServerError(f"the inference server at {url} refused the request (HTTP {status}): {why}", status)
        if status >= 400:
            detail = _error_detail(response)
            if status == 404 and url.endswith("/completions") and "model" not in detail.lower():
                detail += (" — the server has no OpenAI completions endpoint here: check the base URL "
                           "(it usually ends in /v1)")
            raise _ServerError(f"the inference server at {url} answered HTTP {status}: {detail}", status)
        try:
            return response.json()
        except ValueError:
            raise _ServerError(
                f"the inference server at {url} did not answer with JSON (HTTP {status}): is this URL an "
                "OpenAI-compatible API? (it usually ends in /v1)", status
            ) from None

    def _complete(self, payload: dict) -> dict:
        return self._request("POST", "/completions", {"model": self.model, **self.extra_body, **payload})

    # ------------------------------------------------------------ server checks
    def served_models(self) -> tuple[str, ...]:
        """The model names ``GET /v1/models`` lists (fails fast if the server is unreachable)."""
        body = self._request("GET", "/models", retries=0)
        entries = body.get("data", []) if isinstance(body, dict) else []
        return tuple(str(entry.get("id")) for entry in entries if isinstance(entry, dict))

    def check(self) -> None:
        """Check once that the server is up and serves ``model``; raise a clear EvidenceError if not.

        A server without a ``/v1/models`` endpoint is given the benefit of the doubt.
        """
        if self._served_models is not None:
            return
        try:
            served = self.served_models()
        except _ServerError as error:
            if error.status in (401, 403):
                raise
            logger.info("%s: no model list (%s); not checking the model name", self.base_url, error)
            served = ()
        if served and self.model not in served:
            raise EvidenceError(
                f"the inference server at {self.base_url} does not serve a model named {self.model!r}; "
                f"it serves: {', '.join(served)}. Pass one of these as model."
            )
        self._served_models = served

    # ---------------------------------------------------------------- prompting
    def prompt(self, text: str, labels: Sequence[str]) -> str:
        """The completion prompt sent for ``text`` (the answer follows it)."""
        return self.template.render(text, labels)

    def _answers(self, labels: Sequence[str]) -> tuple[list[str], list[int]]:
        """The answers scored for z, each with its label's index: the labels as written (after the
        answer lead), then, with ``surface_forms``, the other forms in the embedded engine's order."""
        lead = self.template.answer_lead()
        answers, owners = [lead + label for label in labels], list(range(len(labels)))
        if self.surface_forms:
            for group in surface_form_answers(labels, lead):
                for k, forms in enumerate(group):
                    for form in forms:
                        if form not in answers:
                            answers.append(form)
                            owners.append(k)
        return answers, owners

    def _sample_seed(self, prompt: str, index: int) -> int:
        return (zlib.crc32(prompt.encode("utf-8")) + 1_000_003 * index + 7_919 * self.random_state) % (2**31 - 1)

    # ------------------------------------------------------------ z: exact scoring
    def _answer_logprob(self, prompt: str, continuation: str) -> tuple[float, tuple[str, ...]]:
        """log p(answer tokens | prompt) and those tokens, from the echoed prompt's log-probabilities."""
        body = self._complete({"prompt": prompt + continuation, "max_tokens": 1, "temperature": 0.0,
                               "echo": True, "logprobs": 1})
        return _continuation_logprob(body, len(prompt), len(prompt) + len(continuation))

    # ---------------------------------------------------------- z: stepwise fallback
    def _top_next(self, context: str) -> dict[str, float]:
        """The server's top next tokens after ``context`` with their log-probabilities."""
        body = self._complete({"prompt": context, "max_tokens": 1, "temperature": 0.0,
                               "logprobs": self.top_logprobs})
        return _first_top_logprobs(body)

    def _stepwise_logprobs(self, prompt: str, answers: Sequence[str]) -> tuple[np.ndarray, list[tuple[str, ...]]]:
        """log p(answer | prompt) and its tokens for each answer, walked through the top next tokens
        (see module doc)."""
        return _walk_continuations(answers, lambda consumed: self._top_next(prompt + consumed))

    def _resolve_z_method(self, prompt: str, labels: Sequence[str]) -> str:
        """Probe once which z method the server supports (``z_method="auto"``).

        Exact scoring needs the echoed prompt's log-probabilities *and* needs them right: some
        servers ignore ``echo`` (llama.cpp's), others have paired each echoed token with the
        distribution one position late for models that add no BOS token (SmolLM2, Qwen2.5),
        which would give meaningless z. So the echo is checked against the next-token
        log-probabilities of the same prompt (which every server computes the same way) before
        it is trusted.
        """
        if self._resolved_z_method is None:
            try:
                top = self._top_next(prompt)
            except (_NoLogprobs, _ServerError) as error:
                if isinstance(error, _ServerError) and error.status in (401, 403):
                    raise
                raise EvidenceError(
                    f"the inference server at {self.base_url} gives no log-probabilities for model "
                    f"{self.model!r} ({error}), so the label probabilities z cannot be computed. "
                    + _LOGPROBS_HINT
                ) from None
            try:
                problem = self._echo_problem(prompt, top)
            except (_NoLogprobs, _ServerError) as error:
                if isinstance(error, _ServerError) and error.status in (401, 403):
                    raise
                problem = f"it cannot echo the prompt's log-probabilities ({error})"
            if problem is None:
                self._resolved_z_method = "exact"
            else:
                self._z_fallback = f"exact label scoring unavailable: {problem}"
                logger.warning("%s (%s): %s; using stepwise scoring", self.base_url, self.model,
                               self._z_fallback)
                self._resolved_z_method = "stepwise"
        return self._resolved_z_method

    def _echo_problem(self, prompt: str, top: dict[str, float], tries: int = 2) -> str | None:
        """Why the echoed log-probabilities cannot be trusted, or None if they agree.

        Echoes ``prompt + t`` for a likely next token t and compares t's echoed log-probability
        with its next-token log-probability from ``top`` (tokens that merge into a neighbour
        on re-tokenisation are skipped; if none can be compared the echo is trusted).
        """
        candidates = [t for t, _ in sorted(top.items(), key=lambda kv: -kv[1]) if t.strip()][:tries]
        for token in candidates:
            body = self._complete({"prompt": prompt + token, "max_tokens": 1, "temperature": 0.0,
                                   "echo": True, "logprobs": 1})
            if not str(body["choices"][0].get("text") or "").startswith(prompt):
                return "it ignores echo=true (the prompt's tokens are not returned)"
            logprobs = _first_choice_logprobs(body)
            tokens, offsets, values = (logprobs.get(k) for k in ("tokens", "text_offset", "token_logprobs"))
            if not tokens or not offsets or not values:
                return "the echoed completion has no token log-probabilities"
            if offsets[0] != 0:
                return "it ignores echo=true (the prompt's tokens are not returned)"
            for echoed_token, offset, value in zip(tokens, offsets, values):
                if offset == len(prompt) and echoed_token == token:
                    if value is None:
                        return "the echoed completion has no token log-probabilities"
                    if abs(float(value) - top[token]) > 0.05 + 0.01 * abs(top[token]):
                        return (f"the server's echoed log-probability of {token!r} ({float(value):.3f}) "
                                f"disagrees with its next-token log-probability ({top[token]:.3f}), so its "
                                "echoed prompt log-probabilities are misaligned")
                    return None
        return None

    # ------------------------------------------------------------- c: sampling
    def _sample(self, prompt: str, n: int, first_index: int) -> list[str]:
        payload = {"prompt": prompt, "max_tokens": self.max_new_tokens, "temperature": self.temperature,
                   "top_p": self.top_p, "stop": ["\n"], "seed": self._sample_seed(prompt, first_index)}
        if n > 1:
            payload["n"] = n
        choices = self._complete(payload).get("choices") or []
        return [str(choice.get("text") or "") for choice in choices[:n]]

    def _resolve_n_support(self, prompt: str) -> bool:
        """Probe once whether the server honours ``n`` (vLLM does; llama.cpp's server refuses it
        with HTTP 400, others ignore it)."""
        if self._honours_n is None:
            payload = {"prompt": prompt, "max_tokens": 1, "temperature": 1.0, "n": 2}
            try:
                self._honours_n = len(self._complete(payload).get("choices") or []) == 2
            except _ServerError as error:
                if error.status not in (400, 422):
                    raise
                self._honours_n = False
        return self._honours_n

    # ----------------------------------------------------------------- evidence
    def evidence(
        self,
        texts: Sequence[str],
        labels: Sequence[str],
        *,
        text_ids: Sequence[str] | None = None,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> list[EvidenceRecord]:
        """One record per text: z (Eq. 1) from log-probabilities, c (Eq. 2) from T sampled answers.

        Up to ``max_concurrency`` requests run at once; texts finish in order, and between
        texts ``progress`` is called and ``cancel`` is checked (raising ``Cancelled``).
        """
        labels = check_labels(labels)
        texts = list(texts)
        text_ids = resolve_text_ids(texts, text_ids)
        if not texts:
            return []
        bad = [i for i, text in enumerate(texts) if not isinstance(text, str)]
        if bad:
            raise EvidenceError(f"texts at positions {bad[:10]} are not strings: every text must be a string")
        self.check()
        first_prompt = self.prompt(texts[0], labels)
        z_method = self._resolve_z_method(first_prompt, labels)
        batched = self.n_samples > 1 and self._resolve_n_support(first_prompt)
        start = time.perf_counter()
        records: list[EvidenceRecord] = []
        window = max(1, self.max_concurrency)  # texts in flight: keeps requests of a text together
        pending: deque[tuple[int, _TextJob]] = deque()
        next_text = 0
        with ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="mollia-server") as pool:
            try:
                while len(records) < len(texts):
                    while next_text < len(texts) and len(pending) < window:
                        prompt = self.prompt(texts[next_text], labels)
                        pending.append((next_text, self._submit(pool, prompt, labels, z_method, batched)))
                        next_text += 1
                    index, job = pending.popleft()
                    records.append(self._record(job, text_ids[index], labels, z_method, batched))
                    if progress is not None:
                        progress(Progress(done=len(records), total=len(texts),
                                          elapsed_s=time.perf_counter() - start))
                    if cancel is not None and cancel.is_set() and len(records) < len(texts):
                        stop = Cancelled(f"cancelled after {len(records)} of {len(texts)} texts")
                        stop.partial = list(records)  # the finished texts, for callers that cache them
                        raise stop
            except BaseException:
                for _, job in pending:
                    job.cancel()
                raise
        return records

    def _submit(self, pool: ThreadPoolExecutor, prompt: str, labels: Sequence[str],
                z_method: str, batched: bool) -> _TextJob:
        answers = self._answers(labels)
        if z_method == "exact":
            scores = [pool.submit(self._answer_logprob, prompt, answer) for answer in answers[0]]
        else:
            scores = [pool.submit(self._stepwise_logprobs, prompt, answers[0])]
        if self.n_samples == 0:
            samples = []
        elif batched:
            samples = [pool.submit(self._sample, prompt, self.n_samples, 0)]
        else:
            samples = [pool.submit(self._sample, prompt, 1, t) for t in range(self.n_samples)]
        return _TextJob(prompt, answers, scores, samples)

    def _record(self, job: _TextJob, text_id: str, labels: tuple[str, ...],
                z_method: str, batched: bool) -> EvidenceRecord:
        try:
            if z_method == "exact":
                scored = [future.result() for future in job.scores]
                answer_logprobs, answer_tokens = np.array([v for v, _ in scored]), [t for _, t in scored]
            else:
                answer_logprobs, answer_tokens = job.scores[0].result()
            answers = tuple(answer for future in job.samples for answer in future.result())
        except _NoLogprobs as error:
            raise EvidenceError(
                f"the inference server at {self.base_url} returned no log-probabilities for text "
                f"{text_id!r} ({error}). " + _LOGPROBS_HINT
            ) from None
        shares, no_label = vote_shares(answers, labels)
        label_logprobs, summed_forms = _summed_over_forms(job.answers, answer_logprobs, answer_tokens, len(labels))
        return EvidenceRecord(
            text_id=text_id,
            model=self.name,
            labels=labels,
            label_probs=_renormalise(label_logprobs),
            vote_shares=shares,
            no_label_share=no_label,
            answers=answers,
            meta={
                "source": "openai-server",
                "z_method": z_method,
                # log p(label | prompt) before renormalising; None where the stepwise method
                # lost the label from the top tokens (JSON has no -inf)
                "label_logprobs": [float(v) if np.isfinite(v) else None for v in label_logprobs],
                "canonical_label_probs": _renormalise(answer_logprobs[: len(labels)]).tolist(),
                "summed_forms": summed_forms,
                "sampling": "n" if batched else "separate requests",
                **({"z_fallback": self._z_fallback} if z_method == "stepwise" and self._z_fallback else {}),
            },
        )


# --------------------------------------------------------------------- helpers
def _retry_after(response: httpx.Response) -> float:
    try:
        return min(float(response.headers.get("retry-after", 0)), _MAX_RETRY_AFTER_S)
    except ValueError:
        return 0.0


def _error_detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    error = body.get("error", body.get("detail", body)) if isinstance(body, dict) else body
    if isinstance(error, dict):
        error = error.get("message", error)
    return str(error)[:300]


def _first_choice_logprobs(body: dict) -> dict:
    choices = body.get("choices") or []
    logprobs = choices[0].get("logprobs") if choices and isinstance(choices[0], dict) else None
    if not isinstance(logprobs, dict):
        raise _NoLogprobs("the completion has no 'logprobs'")
    return logprobs


def _continuation_logprob(body: dict, start: int, end: int) -> tuple[float, tuple[str, ...]]:
    """Sum of the log-probabilities of the echoed tokens covering characters [start, end), and
    those tokens.

    ``start`` is where the label's continuation begins in the echoed text and ``end`` where
    it stops (the generated token follows). A token straddling ``start`` counts with the
    label: it cannot be split, and it is the same for every label only if it lies before.
    """
    logprobs = _first_choice_logprobs(body)
    tokens, offsets, values = logprobs.get("tokens"), logprobs.get("text_offset"), logprobs.get("token_logprobs")
    if not tokens or not offsets or not values or len(tokens) != len(offsets) or len(tokens) != len(values):
        raise _NoLogprobs("the completion's logprobs lack tokens, text_offset or token_logprobs")
    total, counted = 0.0, []
    for token, offset, value in zip(tokens, offsets, values):
        if offset >= end:
            break  # the generated token(s) after the echoed prompt
        if offset + len(token) <= start:
            continue  # a prompt token
        if value is None:
            raise _NoLogprobs("the server gave no log-probability for a label token")
        total += float(value)
        counted.append(str(token))
    if not counted:
        raise _NoLogprobs("the echoed prompt's log-probabilities do not reach the label")
    return total, tuple(counted)


def _first_top_logprobs(body: dict) -> dict[str, float]:
    """The first generated token's top alternatives, ``{token text: log-probability}``.

    Reads the completions API's ``top_logprobs: [{token: logprob}]`` (OpenAI, vLLM) and the
    chat-completions shape ``content: [{"top_logprobs": [{"token", "logprob"}]}]`` that
    llama.cpp's server returns on ``/v1/completions`` too.
    """
    logprobs = _first_choice_logprobs(body)
    top = logprobs.get("top_logprobs")
    if top and isinstance(top[0], dict) and top[0]:
        return {str(token): float(value) for token, value in top[0].items()}
    content = logprobs.get("content")
    alternatives = content[0].get("top_logprobs") if content and isinstance(content[0], dict) else None
    if alternatives and all(isinstance(entry, dict) and "token" in entry and "logprob" in entry
                            for entry in alternatives):
        return {str(entry["token"]): float(entry["logprob"]) for entry in alternatives}
    raise _NoLogprobs("the completion has no top_logprobs")


def _walk_continuations(continuations: Sequence[str], top_after) -> tuple[np.ndarray, list[tuple[str, ...]]]:
    """Sum of log-probabilities along each continuation, one top token at a time, and the tokens walked.

    ``top_after(consumed)`` gives the top next tokens after the prompt plus the ``consumed``
    text; each step takes the longest top token the rest of the continuation starts with.
    A continuation that no top token continues scores -inf. Each distinct consumed prefix
    is asked for once, so labels sharing a first token cost one request for it.
    """
    tops: dict[str, dict[str, float]] = {}
    scores = np.zeros(len(continuations))
    paths: list[tuple[str, ...]] = []
    for k, continuation in enumerate(continuations):
        consumed, path = "", []
        while consumed != continuation:
            if consumed not in tops:
                tops[consumed] = top_after(consumed)
            top, rest = tops[consumed], continuation[len(consumed):]
            matches = [token for token in top if token and rest.startswith(token)]
            if not matches:
                scores[k] = -math.inf
                break
            token = max(matches, key=len)
            scores[k] += top[token]
            consumed += token
            path.append(token)
        paths.append(tuple(path))
    return scores, paths


def _summed_over_forms(
    answers: tuple[Sequence[str], Sequence[int]], logprobs: np.ndarray, tokens: Sequence[Sequence[str]], n_labels: int
) -> tuple[np.ndarray, list[list[str]]]:
    """log z_k before renormalising (Eq. 1 over surface forms) and the answers summed per label.

    ``answers`` is ``(answer texts, label index of each)``, the labels as written first (always
    summed); a later form is summed if it has a probability and its tokens overlap no summed
    answer's tokens (``parsing.overlaps_any``), the rule of the embedded engine.
    """
    texts, owners = answers
    out = np.full(n_labels, -np.inf)
    summed_forms: list[list[str]] = [[] for _ in range(n_labels)]
    summed_tokens: list[Sequence[str]] = []
    for i, (text, k, value, path) in enumerate(zip(texts, owners, logprobs, tokens)):
        if i >= n_labels and (not np.isfinite(value) or overlaps_any(path, summed_tokens)):
            continue
        if np.isfinite(value):  # a label that fell out of the top tokens has no path to compare
            out[k] = np.logaddexp(out[k], value)
            summed_forms[k].append(text)
            summed_tokens.append(path)
    return out, summed_forms


def _renormalise(label_logprobs: np.ndarray) -> np.ndarray:
    """z over the labels (Eq. 1): softmax of the label log-probabilities; uniform if none is finite."""
    finite = np.isfinite(label_logprobs)
    if not finite.any():
        return np.full(len(label_logprobs), 1.0 / len(label_logprobs))
    shifted = np.where(finite, label_logprobs - label_logprobs[finite].max(), -np.inf)
    weights = np.exp(shifted)
    return weights / weights.sum()
