"""What label descriptions and in-context demonstrations cost per text.

Descriptions and demonstrations sit in the prompt's shared prefix, which the evidence engine
prefills once per model and label set (``scoring.EvidenceEngine._prepare``); each text then pays
only for its own tokens, attending over the longer prefix. Per prompt variant and model this
prints the prefix length in tokens, the one-off prefix prefill time, and the wall time per
text of ``score_texts`` (z, expected votes and, unless ``--samples 0``, T sampled answers).

    MOLLIA_TORCH_THREADS=1 python benchmarks/prompt_cost.py --dataset rotten-tomatoes \\
        --models smollm2-135m,qwen2.5-coder-0.5b --n 20
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mollia_core.evidence.hf import cpu_compute_quantization  # noqa: E402
from mollia_core.evidence.embedded import prepare_embedded_model  # noqa: E402
from mollia_core.evidence.prompt import PromptTemplate, choose_demonstrations  # noqa: E402
from mollia_core.evidence.scoring import DecodingSettings, EvidenceEngine, default_threads  # noqa: E402
from mollia_core.examples import load_example  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from panel_evidence import DESCRIPTIONS  # noqa: E402


def variants(dataset: str, labels: tuple[str, ...], pool) -> dict[str, PromptTemplate]:
    """Plain, with descriptions, and with descriptions plus 1 and 2 demonstrations per label
    (taken from texts outside the measured ones)."""
    labeled = list(zip(pool["text"].astype(str), pool["label"].astype(str)))
    out = {"plain": PromptTemplate(), "descriptions": PromptTemplate(descriptions=DESCRIPTIONS.get(dataset, {}))}
    for k in (1, 2):
        demonstrations, spares = choose_demonstrations(labeled, labels, k)
        out[f"descriptions + {k} demo/label"] = PromptTemplate(
            descriptions=DESCRIPTIONS.get(dataset, {}), demonstrations=demonstrations, spare_demonstrations=spares
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="rotten-tomatoes")
    parser.add_argument("--models", default="smollm2-135m,qwen2.5-coder-0.5b")
    parser.add_argument("--n", type=int, default=20, help="texts timed per variant")
    parser.add_argument("--samples", type=int, default=10, help="sampled answers per text (0: expected votes only)")
    args = parser.parse_args(argv)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    frame = load_example(args.dataset, n=args.n + 40, random_state=1)
    texts, pool = frame["text"].astype(str).tolist()[: args.n], frame.iloc[args.n :]
    labels = tuple(sorted(set(frame["label"].astype(str))))
    settings = DecodingSettings(n_samples=args.samples, vote_mode="sampled" if args.samples else "expected")
    rows = []
    for name in args.models.split(","):
        folder = prepare_embedded_model(name)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[cpu_compute_quantization()]
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
        for variant, template in variants(args.dataset, labels, pool).items():
            engine = EvidenceEngine(model, tokenizer, template, settings, n_threads=default_threads())
            start = time.perf_counter()
            prepared = engine._prepare(labels)
            prefix_s = time.perf_counter() - start
            start = time.perf_counter()
            engine.score_texts(texts, labels)
            per_text = (time.perf_counter() - start) / len(texts)
            row = {"model": name, "variant": variant, "prefix_tokens": len(prepared.prefix_ids),
                   "prefix_prefill_s": round(prefix_s, 3), "seconds_per_text": round(per_text, 3)}
            rows.append(row)
            print(json.dumps(row), flush=True)
        del model
    print("| model | prompt | prefix tokens | prefix prefill (once) | s / text |")
    print("|---|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['variant']} | {r['prefix_tokens']} | {r['prefix_prefill_s']:.2f} s | "
              f"{r['seconds_per_text']:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
