"""OpenAICompatibleSource: against a real llama.cpp server on loopback (``python -m mollia_core serve``,
slow), and unit tests of the logic around HTTP (retry/backoff, errors, key handling) with
httpx.MockTransport."""

from __future__ import annotations

import json
import logging
import math
import socket
import threading

import httpx
import numpy as np
import pytest

from mollia_core import cli
from mollia_core.evidence import server as server_module
from mollia_core.evidence.embedded import EMBEDDED_MODELS, piece_paths, verify_gguf
from mollia_core.evidence.prompt import PromptTemplate
from mollia_core.evidence.server import (
    OpenAICompatibleSource,
    _continuation_logprob,
    _walk_continuations,
    _renormalise,
    normalise_base_url,
)
from mollia_core.evidence.source import Cancelled, EvidenceError

from llama_server import free_loopback_port, llama_server

API_KEY = "sk-mollia-test-Zq8vN3"  # what the real test server demands
LABELS = ("sports", "business", "technology")
TEXTS = (
    "The striker scored twice as the home side won the cup final.",
    "Shares in the bank fell 4% after it cut its profit forecast.",
    "The new phone has a faster chip and a brighter screen.",
)


# ----------------------------------------------------------------- unit: helpers
def test_base_url_is_normalised_and_credentials_in_it_are_refused():
    assert normalise_base_url("http://127.0.0.1:8000") == "http://127.0.0.1:8000/v1"
    assert normalise_base_url("http://127.0.0.1:8000/v1/") == "http://127.0.0.1:8000/v1"
    assert normalise_base_url("https://host/api/v1") == "https://host/api/v1"
    for bad in ("", "127.0.0.1:8000", "ftp://host/v1"):
        with pytest.raises(EvidenceError, match="URL"):
            normalise_base_url(bad)
    with pytest.raises(EvidenceError, match="api_key") as error:
        normalise_base_url("http://user:hunter2@127.0.0.1:8000/v1")
    assert "hunter2" not in str(error.value)


def test_continuation_logprob_sums_only_the_label_tokens():
    # echoed "Q:\nCategory: sports" + generated "\n"; the label continuation is " sports" (chars 12..19)
    body = {"choices": [{"logprobs": {
        "tokens": ["Q", ":\n", "Category", ":", " sport", "s", "\n"],
        "text_offset": [0, 1, 3, 11, 12, 18, 19],
        "token_logprobs": [None, -1.0, -2.0, -0.5, -0.25, -0.125, -3.0],
    }}]}
    assert _continuation_logprob(body, 12, 19) == (pytest.approx(-0.375), (" sport", "s"))
    # a token straddling the boundary counts with the label
    assert _continuation_logprob(body, 13, 19) == (pytest.approx(-0.375), (" sport", "s"))
    with pytest.raises(server_module._NoLogprobs):
        _continuation_logprob({"choices": [{"logprobs": None}]}, 12, 19)


def test_stepwise_walk_follows_the_longest_top_tokens_and_tells_shared_prefixes_apart():
    tops = {
        "": {" pos": -0.5, " neg": -1.5, " p": -2.0, "\n": -3.0},
        " pos": {"itive": -0.1, "tal": -2.3, "\n": -1.0},
        " neg": {"ative": -0.2},
    }
    asked = []

    def top_after(consumed):
        asked.append(consumed)
        return tops.get(consumed, {"x": -0.1})

    scores, paths = _walk_continuations([" positive", " postal", " negative", " art", " pos"], top_after)
    np.testing.assert_allclose(scores[:3], [-0.6, -2.8, -1.7])
    assert paths[0] == (" pos", "itive") and paths[4] == (" pos",)
    assert scores[3] == -math.inf  # no top token starts " art"
    assert scores[4] == -0.5  # " pos" itself is one token
    assert sorted(asked) == ["", " neg", " pos"]  # each shared prefix asked for once
    z = _renormalise(scores)
    assert z.sum() == pytest.approx(1.0) and z[3] == 0.0
    np.testing.assert_allclose(_renormalise(np.array([-math.inf, -math.inf])), [0.5, 0.5])


# ------------------------------------------------------ unit: HTTP logic (fake server)
class FakeServer:
    """A scripted OpenAI-compatible endpoint: each POST /v1/completions pops the next status.

    Its tokens are single characters with log-probability -0.1, except that a prompt ending in
    one of the ``TOP`` next tokens echoes that token whole, with its ``TOP`` log-probability
    (``misaligned=True``: 3 nats off, as servers have done for models without BOS).
    """

    TOP = {" a": -0.2, " b": -1.9, " s": -2.5}

    def __init__(self, statuses=(), *, echo=True, logprobs=True, honours_n=False, models=("m",), headers=None,
                 misaligned=False):
        self.statuses = list(statuses)
        self.echo, self.logprobs, self.honours_n, self.models = echo, logprobs, honours_n, models
        self.headers = headers or {}
        self.misaligned = misaligned
        self.requests: list[httpx.Request] = []

    def completion(self, payload: dict) -> dict:
        prompt = payload["prompt"]
        echoing = bool(payload.get("echo") and self.echo)
        if echoing:
            tail = next((t for t in self.TOP if prompt.endswith(t)), "")
            tokens = list(prompt[: len(prompt) - len(tail)]) + ([tail] if tail else []) + ["x"]
            values = [None] + [-0.1] * (len(tokens) - 1)
            if tail:
                values[-2] = self.TOP[tail] - (3.0 if self.misaligned else 0.0)
            offsets = [0]
            for token in tokens[:-1]:
                offsets.append(offsets[-1] + len(token))
            logprobs = {"tokens": tokens, "text_offset": offsets, "token_logprobs": values,
                        "top_logprobs": [None] + [{"x": -0.1}] * (len(tokens) - 1)}
        elif self.logprobs and payload.get("logprobs"):
            logprobs = {"tokens": [" a"], "text_offset": [len(prompt)], "token_logprobs": [-0.2],
                        "top_logprobs": [dict(self.TOP)]}
        else:
            logprobs = None
        n = payload.get("n", 1) if self.honours_n else 1
        text = (prompt if echoing else "") + " a"
        return {"choices": [{"text": text, "index": i, "logprobs": logprobs} for i in range(n)]}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"data": [{"id": m} for m in self.models]})
        status = self.statuses.pop(0) if self.statuses else 200
        if status != 200:
            return httpx.Response(status, json={"error": {"message": f"status {status}"}}, headers=self.headers)
        return httpx.Response(200, json=self.completion(json.loads(request.content)))


def fake_source(fake: FakeServer, **kwargs) -> OpenAICompatibleSource:
    kwargs.setdefault("n_samples", 2)
    return OpenAICompatibleSource("http://127.0.0.1:9/v1", "m", transport=httpx.MockTransport(fake), **kwargs)


@pytest.fixture
def sleeps(monkeypatch):
    waits: list[float] = []
    monkeypatch.setattr(server_module.time, "sleep", waits.append)
    return waits


def test_5xx_is_retried_with_exponential_backoff(sleeps):
    fake = FakeServer([503, 502])
    source = fake_source(fake, backoff_s=0.5, retries=3)
    body = source._complete({"prompt": "p", "max_tokens": 1})
    assert body["choices"][0]["text"] == " a"
    assert sleeps == [0.5, 1.0]
    assert len(fake.requests) == 3


def test_429_waits_for_retry_after(sleeps):
    fake = FakeServer([429], headers={"Retry-After": "3"})
    fake_source(fake, backoff_s=0.5)._complete({"prompt": "p"})
    assert sleeps == [3.0]


def test_retries_run_out_with_a_clear_error(sleeps):
    fake = FakeServer([503] * 10)
    with pytest.raises(EvidenceError, match="HTTP 503"):
        fake_source(fake, retries=2, backoff_s=0.1)._complete({"prompt": "p"})
    assert len(fake.requests) == 3 and sleeps == [0.1, 0.2]


def test_connection_errors_are_retried_then_explained(sleeps):
    calls = []

    def refuse(request):
        calls.append(request)
        raise httpx.ConnectError("connection refused", request=request)

    source = OpenAICompatibleSource("http://127.0.0.1:9/v1", "m", retries=2, backoff_s=0.1,
                                    transport=httpx.MockTransport(refuse))
    with pytest.raises(EvidenceError, match="Is the server running?") as error:
        source._complete({"prompt": "p"})
    assert "http://127.0.0.1:9/v1/completions" in str(error.value)
    assert len(calls) == 3 and sleeps == [0.1, 0.2]


def test_401_is_not_retried_and_the_key_is_sent_as_bearer_but_never_shown(sleeps):
    fake = FakeServer([401])
    source = fake_source(fake, api_key=API_KEY)
    with pytest.raises(EvidenceError, match="API key was rejected") as error:
        source._complete({"prompt": "p"})
    assert len(fake.requests) == 1 and sleeps == []
    assert fake.requests[0].headers["authorization"] == f"Bearer {API_KEY}"
    assert API_KEY not in str(error.value)


def test_server_without_echo_falls_back_to_stepwise_scoring_and_records_it():
    fake = FakeServer(echo=False, honours_n=True)
    records = fake_source(fake, n_samples=3).evidence(["t1", "t2"], ["a", "b", "c"])
    assert [r.meta["z_method"] for r in records] == ["stepwise", "stepwise"]
    assert records[0].meta["sampling"] == "n"
    z = records[0].label_probs
    # " a" -0.2, " b" -1.9, " c" absent from the top tokens
    np.testing.assert_allclose(z, np.exp([-0.2, -1.9, -np.inf]) / np.exp([-0.2, -1.9]).sum())
    assert records[0].meta["label_logprobs"] == [-0.2, -1.9, None]  # JSON-safe: no -inf
    assert records[0].answers == (" a", " a", " a") and records[0].vote_shares[0] == 1.0


def test_server_without_logprobs_gets_an_error_naming_the_options():
    fake = FakeServer(echo=False, logprobs=False)
    with pytest.raises(EvidenceError, match="gives no log-probabilities") as error:
        fake_source(fake).evidence(["t"], ["a", "b"])
    assert "python -m mollia_core serve" in str(error.value) and "vLLM" in str(error.value)


def test_exact_scoring_tells_apart_labels_that_share_a_first_token():
    # The fake's echo gives -0.1 per character: " pos" (4 chars) beats " positive" (9 chars).
    records = fake_source(FakeServer(), n_samples=0, surface_forms=False).evidence(["t"], ["pos", "positive"])
    assert records[0].meta["z_method"] == "exact" and "z_fallback" not in records[0].meta
    np.testing.assert_allclose(records[0].meta["label_logprobs"], [-0.4, -0.9], atol=1e-9)
    assert records[0].label_probs[0] > records[0].label_probs[1]


def test_misaligned_echo_is_detected_and_stepwise_scoring_used_instead():
    records = fake_source(FakeServer(misaligned=True), n_samples=1).evidence(["t"], ["a", "b"])
    assert records[0].meta["z_method"] == "stepwise"
    assert "misaligned" in records[0].meta["z_fallback"]
    np.testing.assert_allclose(records[0].meta["label_logprobs"], [-0.2, -1.9])


def test_cache_key_follows_settings_but_never_the_key():
    base = dict(base_url="http://127.0.0.1:8000/v1", model="m")
    key = OpenAICompatibleSource(**base, api_key=API_KEY).cache_key
    assert key == OpenAICompatibleSource(**base, api_key="another-key").cache_key
    assert key == OpenAICompatibleSource(**base).cache_key
    assert key != OpenAICompatibleSource(**base, temperature=1.0).cache_key
    assert key != OpenAICompatibleSource(**base, template=PromptTemplate(completion_suffix="\nLabel:")).cache_key
    assert key != OpenAICompatibleSource(base_url="http://127.0.0.1:8001/v1", model="m").cache_key
    assert key != OpenAICompatibleSource(**base, surface_forms=False).cache_key
    assert API_KEY not in key


def test_exact_z_sums_surface_forms_whose_tokens_overlap_no_summed_answer():
    # The fake's echo: one token per character, -0.1 each. " po" is a prefix of " pos" and " negs" an
    # extension of " neg": left out; the capitalised, quoted and space-less forms are summed.
    records = fake_source(FakeServer(), n_samples=0).evidence(["t"], ["pos", "neg"])
    meta = records[0].meta
    assert meta["summed_forms"][0] == [" pos", " Pos", ' "pos', ' "Pos', "pos", "Pos"]
    assert meta["summed_forms"][1] == [" neg", " Neg", ' "neg', ' "Neg', "neg", "Neg"]
    expected = np.logaddexp.reduce([-0.4, -0.4, -0.5, -0.5, -0.3, -0.3])
    np.testing.assert_allclose(meta["label_logprobs"], [expected, expected], atol=1e-9)
    np.testing.assert_allclose(meta["canonical_label_probs"], [0.5, 0.5])
    plain = fake_source(FakeServer(), n_samples=0, surface_forms=False).evidence(["t"], ["pos", "neg"])[0]
    np.testing.assert_allclose(plain.meta["label_logprobs"], [-0.4, -0.4], atol=1e-9)
    assert plain.meta["summed_forms"] == [[" pos"], [" neg"]]


# --------------------------------------------------------- real llama.cpp server
# llama.cpp's own server (python -m mollia_core serve) ignores echo=true, so "auto" must find that
# out and fall back to stepwise scoring, which is the exact label-sequence probability while each
# label token is among the top next tokens (checked below against the server's own log-probability
# of each token of the label's canonical tokenisation).
SHORT_TEMPLATE = PromptTemplate(template="Categories: {labels}.\nText: {text}")
REAL_LABELS = ("Sports", "Business")


def smollm2_gguf():
    """SmolLM2's GGUF as its package ships it (one piece), verified; nothing is written."""
    gguf = piece_paths(EMBEDDED_MODELS["smollm2-135m"])[0]
    verify_gguf("smollm2-135m", gguf)
    return gguf


@pytest.fixture(scope="session")
def smollm2_server(tmp_path_factory):
    gguf = smollm2_gguf()
    # One thread: on a loaded machine two spinning llama.cpp threads did not finish warming up in 120 s.
    with llama_server(gguf, api_key=API_KEY, n_threads=1, log_dir=tmp_path_factory.mktemp("llama-server")) as server:
        yield server


def real_source(server, **kwargs) -> OpenAICompatibleSource:
    kwargs.setdefault("api_key", API_KEY)
    kwargs.setdefault("template", SHORT_TEMPLATE)
    kwargs.setdefault("n_samples", 4)
    kwargs.setdefault("max_concurrency", 2)
    return OpenAICompatibleSource(server.base_url, server.model, **kwargs)


@pytest.fixture(scope="session")
def real_run(smollm2_server):
    """One evidence run for the 3 texts, with every log record (DEBUG and up) captured."""
    captured: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record):
            captured.append(self.format(record))

    handler, root = Capture(level=logging.DEBUG), logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        source = real_source(smollm2_server)
        seen = []
        records = source.evidence(TEXTS, REAL_LABELS, text_ids=["a", "b", "c"], progress=seen.append)
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    return source, records, seen, "\n".join(captured)


@pytest.mark.slow
def test_real_server_evidence_is_valid(real_run, smollm2_server):
    source, records, seen, logs = real_run
    assert [r.text_id for r in records] == ["a", "b", "c"]
    assert [p.done for p in seen] == [1, 2, 3] and seen[-1].total == 3
    for record in records:
        assert record.labels == REAL_LABELS and record.model == smollm2_server.model
        assert record.label_probs.shape == (2,) and np.all(record.label_probs > 0)
        assert record.label_probs.sum() == pytest.approx(1.0)
        assert record.vote_shares.sum() <= 1.0 + 1e-9
        assert record.vote_shares.sum() + record.no_label_share == pytest.approx(1.0)
        assert len(record.answers) == 4 and all(isinstance(a, str) for a in record.answers)
        assert record.meta["sampling"] == "separate requests"  # llama.cpp's server refuses n > 1
        # the ignored echo was caught, said so in the log and in every record
        assert record.meta["z_method"] == "stepwise" and "ignores echo=true" in record.meta["z_fallback"]
        assert not any("\n" in answer for answer in record.answers)  # stop=["\n"] was honoured
    assert "ignores echo=true" in logs
    # Reproducible: the same seeds give the same samples, and z does not depend on concurrency.
    again = real_source(smollm2_server, max_concurrency=1).evidence(TEXTS[:1], REAL_LABELS)
    assert again[0].answers == records[0].answers
    np.testing.assert_allclose(again[0].label_probs, records[0].label_probs, atol=1e-4)


@pytest.mark.slow
def test_real_server_never_shows_the_api_key(real_run):
    source, records, _, logs = real_run
    assert "HTTP Request: POST" in logs  # httpx's request log was captured
    exported = json.dumps([{"meta": r.meta, "answers": r.answers} for r in records])
    for shown in (logs, repr(source), source.cache_key, json.dumps(source.settings()), exported,
                  str(vars(source))):
        assert API_KEY not in shown
    assert "api_key='***'" in repr(source) and source.settings()["api_key_set"] is True


def _server_root(server) -> str:
    return server.base_url.removesuffix("/v1")


def _forced_token_logprob(server, prefix_ids: list[int], token_id: int) -> tuple[float, list[int]]:
    """The server's log p(token | prefix) and its top-20 next tokens, with the token forced.

    llama.cpp reports the log-probability of the generated token from the raw logits, before
    sampling (logit_bias included), so biasing the wanted token makes it the one reported.
    """
    response = httpx.post(f"{server.base_url}/completions", headers={"Authorization": f"Bearer {API_KEY}"},
                          timeout=60, json={"model": server.model, "prompt": prefix_ids, "max_tokens": 1,
                                            "temperature": 0.0, "logprobs": 20,
                                            "logit_bias": {str(token_id): 100}})
    response.raise_for_status()
    generated = response.json()["choices"][0]["logprobs"]["content"][0]
    assert generated["id"] == token_id
    return generated["logprob"], [entry["id"] for entry in generated["top_logprobs"]]


@pytest.mark.slow
def test_real_server_z_is_the_label_sequence_probability(real_run, smollm2_server):
    source, records, _, _ = real_run

    def tokenize(text: str) -> list[int]:
        response = httpx.post(f"{_server_root(smollm2_server)}/tokenize", timeout=30,
                              headers={"Authorization": f"Bearer {API_KEY}"},
                              json={"content": text, "add_special": True})
        response.raise_for_status()
        return response.json()["tokens"]

    for text, record in zip(TEXTS, records):
        prompt = source.prompt(text, REAL_LABELS)
        prompt_ids = tokenize(prompt)
        expected = []
        for label in REAL_LABELS:
            ids = tokenize(prompt + source.template.answer_lead() + label)
            assert ids[: len(prompt_ids)] == prompt_ids  # the label starts a new token
            total = 0.0
            for i in range(len(prompt_ids), len(ids)):
                logprob, top = _forced_token_logprob(smollm2_server, ids[:i], ids[i])
                # precondition for stepwise scoring to be exact: each label token is a top-20 token
                assert ids[i] in top
                total += logprob
            expected.append(total)
        np.testing.assert_allclose(record.meta["canonical_label_probs"], _renormalise(np.array(expected)), atol=0.005)


def _tokenize(server, text: str) -> list[int]:
    response = httpx.post(f"{_server_root(server)}/tokenize", timeout=30, headers={"Authorization": f"Bearer {API_KEY}"},
                          json={"content": text, "add_special": True})
    response.raise_for_status()
    return response.json()["tokens"]


@pytest.mark.slow
def test_real_server_z_sums_each_labels_surface_forms(smollm2_server):
    """Lower-case labels, which SmolLM2 mostly writes capitalised: z must sum the forms (as the
    embedded engine does), each form's probability being the server's own token probabilities."""
    labels = ("sports", "business")
    source = real_source(smollm2_server, n_samples=0)
    records = source.evidence(TEXTS[:2], labels)
    plain = real_source(smollm2_server, n_samples=0, surface_forms=False).evidence(TEXTS[:2], labels)
    gained = []
    for text, record, without in zip(TEXTS, records, plain):
        np.testing.assert_allclose(record.meta["canonical_label_probs"], without.label_probs, atol=1e-4)
        prompt = source.prompt(text, labels)
        prompt_ids = _tokenize(smollm2_server, prompt)
        for k, forms in enumerate(record.meta["summed_forms"]):
            assert forms[0] == source.template.answer_lead() + labels[k] and len(forms) > 1
            total = -math.inf
            for form in forms:
                ids = _tokenize(smollm2_server, prompt + form)
                assert ids[: len(prompt_ids)] == prompt_ids
                total = np.logaddexp(total, sum(_forced_token_logprob(smollm2_server, ids[:i], ids[i])[0]
                                                for i in range(len(prompt_ids), len(ids))))
            np.testing.assert_allclose(record.meta["label_logprobs"][k], total, atol=0.03)
            gained.append(record.meta["label_logprobs"][k] - without.meta["label_logprobs"][k])
    assert min(gained) >= 0 and max(gained) > 0.1  # the capitalised "Sports" / "Business" carry real mass


@pytest.mark.slow
def test_real_server_answers_logprobs_requests_and_stays_up(smollm2_server):
    """The request that crashed a natively built server on AVX-512/AMX CPUs: logprobs 5, one token."""
    headers = {"Authorization": f"Bearer {API_KEY}"}
    prompt = "Categories: Sports, Business.\nText: The striker scored twice.\nCategory:"
    completion = httpx.post(f"{smollm2_server.base_url}/completions", headers=headers, timeout=60,
                            json={"model": smollm2_server.model, "prompt": prompt, "logprobs": 5, "max_tokens": 1})
    assert completion.status_code == 200, completion.text
    top = server_module._first_top_logprobs(completion.json())
    assert len(top) == 5 and all(value <= 0.0 for value in top.values())
    chat = httpx.post(f"{smollm2_server.base_url}/chat/completions", headers=headers, timeout=60,
                      json={"model": smollm2_server.model, "max_tokens": 1, "logprobs": True, "top_logprobs": 5,
                            "messages": [{"role": "user", "content": prompt}]})
    assert chat.status_code == 200, chat.text
    assert len(chat.json()["choices"][0]["logprobs"]["content"][0]["top_logprobs"]) == 5
    assert smollm2_server.process.poll() is None  # still running
    assert httpx.get(f"{smollm2_server.base_url}/models", headers=headers, timeout=10).status_code == 200


@pytest.mark.slow
def test_real_server_stepwise_method_and_cancel_between_texts(smollm2_server):
    cancel = threading.Event()
    seen = []

    def progress(p):
        seen.append(p.done)
        cancel.set()

    source = real_source(smollm2_server, n_samples=1, z_method="stepwise")
    with pytest.raises(Cancelled) as stopped:
        source.evidence(TEXTS, REAL_LABELS, progress=progress, cancel=cancel)
    assert seen == [1] and len(stopped.value.partial) == 1
    record = source.evidence(TEXTS[:1], REAL_LABELS)[0]
    assert record.meta["z_method"] == "stepwise" and record.label_probs.sum() == pytest.approx(1.0)


@pytest.mark.slow
@pytest.mark.timeout(30)
def test_unreachable_server_fails_fast_with_a_clear_error():
    port = free_loopback_port()  # nothing listens there
    source = OpenAICompatibleSource(f"http://127.0.0.1:{port}", "m", backoff_s=0.05)
    with pytest.raises(EvidenceError) as error:
        source.evidence(["a text"], LABELS)
    message = str(error.value)
    assert f"http://127.0.0.1:{port}/v1/models" in message and "Is the server running?" in message
    assert "python -m mollia_core serve --model <file.gguf>" in message


def test_serve_refuses_a_file_that_is_not_gguf_and_a_busy_port(tmp_path, capsys):
    not_gguf = tmp_path / "notes.gguf"
    not_gguf.write_text("not a model")
    assert cli.main(["serve", "--model", str(not_gguf)]) == 2
    assert "is not a GGUF model file (it does not start with 'GGUF')" in capsys.readouterr().err
    header_only = tmp_path / "header.gguf"
    header_only.write_bytes(b"GGUF" + bytes(16))
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert cli.main(["serve", "--model", str(header_only), "--port", str(port)]) == 2
    assert f"port {port} on 127.0.0.1 is already in use" in capsys.readouterr().err
    assert cli.main(["serve", "--model", str(tmp_path / "missing.gguf")]) == 2
    assert "not found: give the path of a .gguf file" in capsys.readouterr().err


@pytest.mark.slow
def test_serve_stops_cleanly_on_sigterm(tmp_path):
    with llama_server(smollm2_gguf(), n_threads=1, log_dir=tmp_path) as server:
        assert httpx.get(f"{server.base_url}/models", timeout=10).status_code == 200
    assert server.process.returncode == 0  # llama_server sends SIGTERM; serve returns normally
    log = server.log_path.read_text(errors="replace")
    assert f"at {server.base_url}; Ctrl-C stops it" in log and "server stopped" in log


@pytest.mark.slow
def test_unknown_model_name_lists_the_served_models(smollm2_server):
    source = real_source(smollm2_server)
    source.model = "llama-3-70b"
    with pytest.raises(EvidenceError, match=f"does not serve a model named 'llama-3-70b'.*{smollm2_server.model}"):
        source.evidence(TEXTS[:1], REAL_LABELS)


@pytest.mark.slow
def test_wrong_or_missing_api_key_is_refused_without_showing_it(smollm2_server, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = "sk-wrong-key-4411"
    with pytest.raises(EvidenceError, match="HTTP 401") as error:
        real_source(smollm2_server, api_key=wrong).evidence(TEXTS[:1], REAL_LABELS)
    assert wrong not in str(error.value) and wrong not in caplog.text
    with pytest.raises(EvidenceError, match="needs an API key"):
        real_source(smollm2_server, api_key=None).evidence(TEXTS[:1], REAL_LABELS)
