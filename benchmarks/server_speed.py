"""Texts per second through an OpenAI-compatible server: a real llama.cpp server serving SmolLM2.

Starts ``python -m mollia_core serve`` (llama.cpp's own server, prebuilt xllamacpp wheel) on
loopback (2 threads for generation and prompts, ``--parallel`` slots) with the embedded
SmolLM2-135M GGUF, and computes evidence for the same TREC questions (6 labels, the default
prompt) at each concurrency: z alone (T=0), then z + T sampled answers. z uses the method
"auto" resolves to (printed: on this server it is the stepwise method, as llama.cpp's server
does not echo the prompt's log-probabilities).
Prints one line per run and, with ``--json``, a JSON object.

    flock /tmp/mollia-timing.lock python benchmarks/server_speed.py --texts 12 --concurrency 1 4 --parallel 1
"""

from __future__ import annotations

import argparse
import json
import os
import signal
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
    # A kill (SIGTERM) still runs the server's clean-up in llama_server's ``finally``.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=12, help="TREC questions per run")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--samples", type=int, default=10, help="T sampled answers per text")
    parser.add_argument("--z-method", default="auto", choices=["auto", "exact", "stepwise"])
    parser.add_argument("--threads", type=int, default=2, help="server CPU threads")
    parser.add_argument("--parallel", type=int, default=1, help="requests the server evaluates at once")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    trec = load_paper_evidence(paper_evidence_dir("trec"))
    texts, labels = list(trec.texts[: args.texts]), list(trec.labels)
    results: dict[str, dict] = {}
    with llama_server(embedded_gguf_path("smollm2-135m"), alias="smollm2", n_threads=args.threads,
                      parallel=args.parallel) as server:
        # Warm-up: pages the model in and resolves the z method once (its probe is not timed).
        probe = OpenAICompatibleSource(server.base_url, server.model, n_samples=1, z_method=args.z_method)
        first = probe.evidence(texts[:1], labels)[0]
        z_method = first.meta["z_method"]
        print(f"z method: {z_method}" + (f" ({first.meta['z_fallback']})" if "z_fallback" in first.meta else ""))
        for n_samples in (0, args.samples):
            for concurrency in args.concurrency:
                source = OpenAICompatibleSource(server.base_url, server.model, n_samples=n_samples,
                                                max_concurrency=concurrency, z_method=z_method)
                start = time.perf_counter()
                source.evidence(texts, labels)
                seconds = time.perf_counter() - start
                source.close()
                key = f"T={n_samples}, concurrency={concurrency}"
                results[key] = {"texts_per_s": len(texts) / seconds, "seconds": seconds, "texts": len(texts),
                                "z_method": z_method, "server_parallel": args.parallel}
                print(f"{key:>24}: {len(texts) / seconds:6.2f} texts/s ({len(texts)} texts in {seconds:.1f} s)",
                      flush=True)
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
