"""Texts per second through an OpenAI-compatible server: a real llama.cpp server serving SmolLM2.

Starts ``python -m llama_cpp.server`` on loopback (2 threads, ``n_threads_batch`` too) with
the embedded SmolLM2-135M GGUF, and computes full evidence (exact z from echoed
log-probabilities, or the first-token fallback, + T sampled answers) for the same TREC
questions (6 labels, the default prompt) at each concurrency.
Prints one line per run and, with ``--json``, a JSON object.

    flock /tmp/mollia-timing.lock python benchmarks/server_speed.py --texts 6 --concurrency 1 4
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from llama_server import llama_server  # noqa: E402  (tests/llama_server.py)

from mollia_core.evidence import load_paper_evidence  # noqa: E402
from mollia_core.evidence.embedded import embedded_gguf_path  # noqa: E402
from mollia_core.evidence.server import OpenAICompatibleSource  # noqa: E402
from mollia_core.paths import paper_evidence_dir  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=6, help="TREC questions per run")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--samples", type=int, default=10, help="T sampled answers per text")
    parser.add_argument("--z-methods", nargs="+", default=["exact", "first_token"])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    trec = load_paper_evidence(paper_evidence_dir("trec"))
    texts, labels = list(trec.texts[: args.texts]), list(trec.labels)
    results: dict[str, dict] = {}
    with llama_server(embedded_gguf_path("smollm2-135m"), alias="smollm2") as server:
        # Warm-up: the first request pays for paging the model in.
        OpenAICompatibleSource(server.base_url, server.model, n_samples=1,
                               z_method="first_token").evidence(texts[:1], labels)
        for z_method in args.z_methods:
            for concurrency in args.concurrency:
                source = OpenAICompatibleSource(server.base_url, server.model, n_samples=args.samples,
                                                max_concurrency=concurrency, z_method=z_method)
                start = time.perf_counter()
                records = source.evidence(texts, labels)
                seconds = time.perf_counter() - start
                source.close()
                assert all(r.meta["z_method"] == z_method for r in records)
                requests = (len(labels) if z_method == "exact" else 1) + args.samples
                key = f"z={z_method}, concurrency={concurrency}"
                results[key] = {"texts_per_s": len(texts) / seconds, "seconds": seconds,
                                "texts": len(texts), "requests_per_text": requests}
                print(f"{key:>34}: {len(texts) / seconds:6.3f} texts/s ({len(texts)} texts in {seconds:.1f} s, "
                      f"{requests} requests/text, T={args.samples})", flush=True)
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
