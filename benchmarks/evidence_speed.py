"""Evidence speed: our engine against the reference recipe, per embedded model.

OUR method (``mollia_core.evidence.scoring.EvidenceEngine``): the prompt's shared prefix
prefilled once per label set; per text one prefill of the rest, the K labels scored
exactly in one batch on the cached prompt (Eq. 1), T = 10 answers of at most 8 tokens
sampled in one batch on the same cache (Eq. 2); ``--batch-size`` texts share each pass.

The REFERENCE recipe (the paper's code, as DESIGN §1 describes it): per text, 10
free-form generations of up to 800 new tokens at temperature 0.7 / top-p 0.9
(``model.generate`` with ``num_return_sequences=10``, which batches them - the most
favourable way to run it), plus one forward pass over the prompt whose top-100
next-token probabilities are summed per label when the token's text is a substring
of the label.

Same prompt (the default template), same texts (TREC questions from the paper's
evidence), same machine, same run. Each (model, method) runs in its own subprocess
so that its peak RSS (``ru_maxrss``) is its own; loading time is reported apart and
not counted in texts/second. The reference is slow, so it may be measured on the
first ``--reference-texts`` of the same texts (printed with the figures).

    flock /tmp/mollia-timing.lock python benchmarks/evidence_speed.py --texts 200 --reference-texts 20

Qwen-1.5B's subprocesses take /tmp/mollia-bigmodel.lock themselves.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

MODELS = ("smollm2-135m", "gemma3-270m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b")
BIG_MODELS = {"qwen2.5-coder-1.5b"}
TOP_K_REFERENCE = 100


def load_texts(n: int) -> tuple[list[str], tuple[str, ...]]:
    from mollia_core.evidence import load_paper_evidence
    from mollia_core.paths import paper_evidence_dir

    data = load_paper_evidence(paper_evidence_dir("trec"))
    return list(data.texts[:n]), data.labels


def load_model(name: str, threads: int):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mollia_core.evidence.embedded import prepare_embedded_model

    torch.set_num_threads(threads)
    folder = prepare_embedded_model(name)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    from mollia_core.evidence.hf import cpu_compute_quantization

    # What the product computes in on this CPU (bf16 where native, else fp32).
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[cpu_compute_quantization()]
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).eval()
    return model, tokenizer


def reference_label_scores(model, tokenizer, template, text: str, labels) -> tuple[list[float], "torch.Tensor"]:
    """The reference z for one text: one pass over the prompt, the top-100 next-token
    probabilities summed per label whose text contains the token's (not a probability vector:
    one token can count for several labels). -> (scores, the prompt's token ids)."""
    import torch

    chat = template.uses_chat(tokenizer)
    prompt = template.render(text, labels, tokenizer)
    ids = torch.tensor([tokenizer(prompt, add_special_tokens=not chat)["input_ids"]])
    with torch.inference_mode():
        probs = torch.softmax(model(input_ids=ids).logits[0, -1].float(), -1)
    top = probs.topk(TOP_K_REFERENCE)
    scores = [0.0] * len(labels)
    for p, token in zip(top.values.tolist(), tokenizer.batch_decode([[t] for t in top.indices.tolist()])):
        piece = token.strip().lower()
        for k, label in enumerate(labels):
            if piece and piece in label.lower():
                scores[k] += p
    return scores, ids


def reference_evidence(model, tokenizer, template, text: str, labels, settings) -> tuple[list[float], list[str]]:
    """The reference recipe for one text: top-100 substring scores and 10 long generations."""
    import torch

    scores, ids = reference_label_scores(model, tokenizer, template, text, labels)
    with torch.inference_mode():
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            do_sample=True,
            temperature=settings.temperature,
            top_p=settings.top_p,
            top_k=0,
            max_new_tokens=800,
            num_return_sequences=10,
            pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        )
    answers = tokenizer.batch_decode(out[:, ids.shape[1] :], skip_special_tokens=True)
    return scores, answers


def worker(name: str, method: str, n_texts: int, threads: int, batch_size: int) -> dict:
    """Run one method on one model in this process; return its figures."""
    import numpy as np
    import torch

    from mollia_core.evidence.parsing import vote_shares
    from mollia_core.evidence.prompt import PromptTemplate
    from mollia_core.evidence.scoring import DecodingSettings, EvidenceEngine

    texts, labels = load_texts(n_texts)
    start = time.perf_counter()
    model, tokenizer = load_model(name, threads)
    load_s = time.perf_counter() - start
    template, settings = PromptTemplate(), DecodingSettings()
    torch.manual_seed(0)
    new_tokens = []
    start = time.perf_counter()
    if method == "ours":
        engine = EvidenceEngine(model, tokenizer, template, settings, n_threads=threads, batch_size=batch_size)
        engine._stops()  # one-off vocabulary scan, part of loading
        start = time.perf_counter()
        results = engine.score_texts(texts, labels, random_state=0)
        elapsed = time.perf_counter() - start
        z_sums = [float(r.label_probs.sum()) for r in results]
        no_label = float(np.mean([r.no_label_share for r in results]))
        mass = float(np.mean([r.mass_on_labels for r in results]))
    else:
        z_sums, no_label_shares = [], []
        for text in texts:
            scores, answers = reference_evidence(model, tokenizer, template, text, labels, settings)
            z_sums.append(sum(scores))
            no_label_shares.append(vote_shares(answers, labels)[1])
            new_tokens.append(float(np.mean([len(tokenizer(a)["input_ids"]) for a in answers])))
        elapsed = time.perf_counter() - start
        no_label, mass = float(np.mean(no_label_shares)), None
    return {
        "model": name,
        "method": method,
        "texts": len(texts),
        "threads": threads,
        "batch_size": batch_size if method == "ours" else None,
        "load_s": round(load_s, 2),
        "seconds": round(elapsed, 2),
        "texts_per_s": len(texts) / elapsed,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "z_sum_max": max(z_sums),
        "mean_no_label_share": no_label,
        "mean_mass_on_labels": mass,
        "mean_reference_answer_tokens": float(np.mean(new_tokens)) if new_tokens else None,
    }


def run_in_subprocess(name: str, method: str, n_texts: int, threads: int, batch_size: int) -> dict:
    command = [sys.executable, __file__, "--worker", name, "--method", method, "--texts", str(n_texts),
               "--threads", str(threads), "--batch-size", str(batch_size)]
    if name in BIG_MODELS:
        command = ["flock", "/tmp/mollia-bigmodel.lock"] + command
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(f"{name} / {method} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--texts", type=int, default=200, help="texts for our method")
    parser.add_argument("--reference-texts", type=int, default=20, help="first texts for the (slow) reference")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8, help="texts per model pass for our method")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--worker", choices=MODELS, help=argparse.SUPPRESS)
    parser.add_argument("--method", choices=("ours", "reference"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.method, args.texts, args.threads, args.batch_size)))
        return
    rows = {}
    for name in args.models:
        ours = run_in_subprocess(name, "ours", args.texts, args.threads, args.batch_size)
        print(f"# {name} ours: {json.dumps(ours)}", file=sys.stderr, flush=True)  # kept if the reference is stopped
        reference = run_in_subprocess(
            name, "reference", min(args.reference_texts, args.texts), args.threads, args.batch_size
        )
        rows[name] = {"ours": ours, "reference": reference, "speedup": ours["texts_per_s"] / reference["texts_per_s"]}
        if not args.json:
            print(
                f"{name:20s} ours {ours['texts_per_s']:7.3f} texts/s ({ours['texts']} texts, "
                f"peak RSS {ours['peak_rss_mib']:6.0f} MiB) | reference {reference['texts_per_s']:7.4f} texts/s "
                f"({reference['texts']} texts, peak RSS {reference['peak_rss_mib']:6.0f} MiB, "
                f"{reference['mean_reference_answer_tokens']:.0f} tokens/answer, max z sum "
                f"{reference['z_sum_max']:.2f}) | speedup {rows[name]['speedup']:5.1f}x",
                flush=True,
            )
    if args.json:
        print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
