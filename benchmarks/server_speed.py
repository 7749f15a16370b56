"""Texts per second through an OpenAI-compatible server: a real llama.cpp server serving SmolLM2.

Starts ``python -m llama_cpp.server`` on loopback (2 threads, ``n_threads_batch`` too) with
the embedded SmolLM2-135M GGUF, and computes full evidence (exact z from echoed
log-probabilities + T sampled answers) for the same TREC questions at each concurrency.
Prints one line per run and, with ``--json``, a JSON object.

    flock /tmp/mollia-timing.lock python benchmarks/server_speed.py --texts 20 --concurrency 1 4
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
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
    parser.add_argument("--texts", type=int, default=20, help="TREC questions per run")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--samples", type=int, default=10, help="T sampled answers per text")
    parser.add_argument("--repeats", type=int, default=2, help="runs per concurrency (median reported)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    trec = load_paper_evidence(paper_evidence_dir("trec"))
    texts, labels = list(trec.texts[: args.texts]), list(trec.labels)
    results: dict[str, dict] = {}
    with llama_server(embedded_gguf_path("smollm2-135m"), alias="smollm2") as server:
        # Warm-up: the first request pays for model paging and the probe requests.
        OpenAICompatibleSource(server.base_url, server.model, n_samples=1).evidence(texts[:1], labels)
        for concurrency in args.concurrency:
            for n_samples, what in ((0, "z only"), (args.samples, f"z + {args.samples} samples")):
                rates = []
                for _ in range(args.repeats):
                    source = OpenAICompatibleSource(server.base_url, server.model, n_samples=n_samples,
                                                    max_concurrency=concurrency)
                    start = time.perf_counter()
                    records = source.evidence(texts, labels)
                    rates.append(len(texts) / (time.perf_counter() - start))
                    source.close()
                assert all(r.meta["z_method"] == "exact" for r in records)
                key = f"concurrency={concurrency}, {what}"
                results[key] = {"texts_per_s": statistics.median(rates), "runs": rates,
                                "requests_per_text": len(labels) + n_samples}
                print(f"{key:>32}: {statistics.median(rates):6.2f} texts/s "
                      f"(runs: {', '.join(f'{r:.2f}' for r in rates)}; {len(labels) + n_samples} requests/text)",
                      flush=True)
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
