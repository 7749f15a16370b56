"""``python -m mollia_core``: headless runs of the active-learning loop, and model preparation.

    python -m mollia_core run --config configs/trec_replay.toml [--output DIR] [--fresh] [--iterations N]
    python -m mollia_core run --project PATH_OR_NAME [--iterations N] [--output DIR]
    python -m mollia_core plan --config FILE [--timed-texts N]
    python -m mollia_core models prepare [--verify] [NAME ...]
    python -m mollia_core serve --model FILE.gguf | --embedded NAME [--host H] [--port P] [--api-key KEY]
    python -m mollia_core label DATA.csv --text-column COL --label-column COL --out OUT.csv [...]

``run --config`` builds (or reopens) the run's project in the output folder through the dashboard's
own Project API, runs the loop to the planned number of iterations -- a run that was killed carries
on where it stopped -- and writes ``results.json`` and ``learning_curve.png`` there; the project file
opens in the dashboard. ``run --project`` continues an existing project (one made by ``run --config``
or in the dashboard) with its stored settings. ``plan --config`` times each LLM of the config's
``[panel]`` on the first seed texts and prints what labeling as you go, the self-training sample and the whole
pool would cost.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Sequence

from .config import PROJECT_FILE, ConfigError, build_project, load_config, panel_answerer, prepare_project, run_project
from .loop import LoopError, StepResult
from .plan import DEFAULT_TIMED_TEXTS
from .store import PROJECT_SUFFIX, StoreError


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
    started = time.perf_counter()
    if args.config:
        config = load_config(args.config)
        if args.output:
            config.output_dir = str(Path(args.output).resolve())
        output = config.output_path
        output.mkdir(parents=True, exist_ok=True)
        path, settings, api_key_env = output / PROJECT_FILE, config.loop, config.api_key_env
        if args.fresh:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        project = prepare_project(config, path, say=lambda line: print(line, flush=True))
    else:
        if args.fresh:
            raise UserError("--fresh discards a run made from a config: use it with --config, not --project")
        path = _project_file(args.project)
        output = Path(args.output).resolve() if args.output else _default_output(path)
        output.mkdir(parents=True, exist_ok=True)
        project, settings, api_key_env = _open_project(path), None, {}
    try:
        iterations = project.iterations()
        if iterations:
            print(f"resuming {path} at iteration {iterations[-1].iteration} ({iterations[-1].status})", flush=True)
        answer = panel_answerer(project, api_key_env, say=lambda line: print(line, flush=True))
        results = run_project(project, args.iterations, settings, progress=_print_step, answer=answer)
        results.update(_panel_cost(project))
    finally:
        project.store.close()
    results["run"] = {
        "config_file": str(Path(args.config).resolve()) if args.config else None,
        "command": " ".join(["python -m mollia_core", *sys.argv[1:]]),
        "project_file": str(path),
        "wall_s_this_invocation": time.perf_counter() - started,
    }
    from .plots import plot_run

    _write_json_atomic(output / "results.json", results)
    plot_run(results, output / "learning_curve.png")
    print(f"wrote {output / 'results.json'} and {output / 'learning_curve.png'}")
    print(f"to open the project in the dashboard: MOLLIA_PROJECTS_DIR={path.parent} streamlit run app.py, "
          f"then open {path.name.removesuffix(PROJECT_SUFFIX)!r}")
    return 0


def _panel_cost(project) -> dict[str, dict[str, float]]:
    """``texts_answered``: texts with each panel LLM's evidence in the project; ``llm_seconds``: wall seconds
    the project's evidence runs spent on each LLM (loading it included; none for replayed evidence)."""
    models = project.panel.models()
    spent = project.get_setting("evidence_seconds", {}) or {}
    return {
        "texts_answered": {model: n for model, n in project.panel.evidence_counts().items() if model in models},
        "llm_seconds": {model: round(spent[model]["seconds"], 3) for model in models if model in spent},
    }


def plan_command(args: argparse.Namespace) -> int:
    import tempfile

    import torch

    from .plan import format_seconds, measure_rates, plan_choices

    torch.set_num_threads(args.threads)
    config = load_config(args.config)
    if not config.panel:
        raise UserError(f"{args.config} has no [panel] of live LLMs to time: add [panel] models = [\"smollm2-135m\"]")
    if args.timed_texts < 1:
        raise UserError(f"--timed-texts must be at least 1, got {args.timed_texts}")
    with tempfile.TemporaryDirectory(prefix="mollia-plan-") as folder:  # the run builds its own project
        project = build_project(config, Path(folder) / PROJECT_FILE)
        try:
            rates = measure_rates(project, timed_texts=args.timed_texts, say=lambda line: print(line, flush=True))
            choices = plan_choices(project, rates)
            n_seeds, n_texts = len(project.dataset.seeds()), project.store.n_texts
        finally:
            project.store.close()
    print(f"\n{n_texts} texts, {n_seeds} seed texts; measured on this machine:")
    for rate in rates:
        print(f"  {rate.model}: {rate.seconds_per_text:.3f} s per text ({rate.texts} texts timed after a warm-up "
              f"text that took {rate.warmup_s:.1f} s with loading)")
    for choice in choices:
        counts = ", ".join(f"{model} {n}" for model, n in choice.texts_per_model.items())
        print(f"{choice.name}: expected {format_seconds(choice.expected_s)}; texts each LLM answers: {counts}")
    chosen = "label as you go" if config.evidence == "on-demand" else "whole pool"
    print(f"this config runs {chosen!r} (evidence = {config.evidence!r}); label as you go counts "
          f"batch_size x planned_iterations queried texts, answered as the loop queries them")
    summary = {"seconds_per_text": {r.model: r.seconds_per_text for r in rates},
               "warmup_s": {r.model: r.warmup_s for r in rates},
               "choices": {c.name: {"expected_s": c.expected_s, "texts_per_model": c.texts_per_model} for c in choices}}
    print(json.dumps(summary))
    return 0


def _project_file(given: str) -> Path:
    """The project file named by ``--project``: a path, or the name of a project in the projects folder."""
    from .project import ProjectError, project_path, projects_dir

    path = Path(given).expanduser()
    if path.is_file():
        return path.resolve()
    try:
        named = project_path(given)
    except ProjectError:
        named = None
    if named is not None and named.is_file():
        return named
    raise UserError(
        f"no project {given!r}: give the path of a {PROJECT_SUFFIX} file (made by run --config or in the "
        f"dashboard) or the name of a project in {projects_dir()}"
    )


def _open_project(path: Path):
    from .project import Project

    project = Project(path)
    if not project.has_dataset():
        project.store.close()
        raise UserError(f"{path} has no data yet: load a table on the dashboard's Data page first")
    return project


def _default_output(path: Path) -> Path:
    """Where ``run --project`` writes its results: the run folder of a project made by ``run --config``,
    else ``<name>-run`` beside the project file."""
    return path.parent if path.name == PROJECT_FILE else path.parent / f"{path.name.removesuffix(PROJECT_SUFFIX)}-run"


def models_prepare_command(args: argparse.Namespace) -> int:
    try:
        from .evidence.embedded import prepare_embedded_models
    except ImportError as exc:
        raise UserError(
            f"the embedded models cannot be prepared: mollia_core.evidence.embedded is not available ({exc})"
        ) from None
    prepared = prepare_embedded_models(args.names or None, progress=lambda message: print(message, flush=True),
                                       verify=args.verify)
    for name, path in prepared.items():
        print(f"{name}: {path}")
    return 0


def label_command(args: argparse.Namespace) -> int:
    from .label import LabelError, LabelRequest, label_table

    def names(value: str | None) -> tuple[str, ...] | None:
        return tuple(part.strip() for part in value.split(",") if part.strip()) if value else None

    request = LabelRequest(
        data=Path(args.data), text_column=args.text_column, label_column=args.label_column, out=Path(args.out),
        id_column=args.id_column, models=names(args.models), labels=names(args.labels),
        project_dir=Path(args.project) if args.project else (
            Path(os.environ["MOLLIA_PROJECTS_DIR"]) if os.environ.get("MOLLIA_PROJECTS_DIR") else None),
    )
    try:
        summary = label_table(request)
    except LabelError as exc:
        raise UserError(str(exc)) from None
    print(json.dumps(summary))
    return 0


def _add_label_parser(commands) -> None:
    label = commands.add_parser(
        "label", help="label a table in one go: filled labels are the seeds, MoLAM labels the other rows",
        description="Rows whose label column is filled are the seeds; every other row gets MoLAM's label. "
        "Progress goes to stderr; the last line on stdout is a JSON summary (estimated accuracy, each "
        "method's cross-validated accuracy on the seeds, texts each LLM answered, wall time).",
    )
    label.add_argument("data", help="the table (CSV, TSV, JSONL or JSON)")
    label.add_argument("--text-column", required=True, help="column holding the texts")
    label.add_argument("--label-column", required=True, help="column holding the labels (empty = to label)")
    label.add_argument("--out", required=True, help="the export to write (.csv, .jsonl or .parquet)")
    label.add_argument("--id-column", help="column of unique text ids (default: row numbers)")
    label.add_argument("--models", help="comma-separated panel: embedded model names or hf:<id> "
                       "(default: the dashboard's default, every embedded model)")
    label.add_argument("--labels", help="comma-separated label set (default: the values in the label column)")
    label.add_argument("--project", help="folder to keep the project in, to open it in the dashboard "
                       "(default: $MOLLIA_PROJECTS_DIR if set, else a temporary one)")
    label.set_defaults(handler=label_command)


def serve_command(args: argparse.Namespace) -> int:
    from .evidence.llama_server import ServeSettings, serve

    if args.embedded:
        from .evidence.embedded import embedded_gguf_path

        model_path, alias = embedded_gguf_path(args.embedded), args.alias or args.embedded
    else:
        model_path = Path(args.model)
        alias = args.alias or model_path.stem
    serve(ServeSettings(model_path=model_path, alias=alias, host=args.host, port=args.port, threads=args.threads,
                        api_key=args.api_key, context=args.ctx, parallel=args.parallel),
          say=lambda message: print(message, flush=True))
    return 0


def _add_serve_parser(commands) -> None:
    from .evidence.llama_server import DEFAULT_CONTEXT, DEFAULT_HOST, DEFAULT_PORT

    serve = commands.add_parser(
        "serve", help="serve a GGUF model over an OpenAI-compatible API (llama.cpp's server) until Ctrl-C",
        description="Runs llama.cpp's own OpenAI-compatible HTTP server (the prebuilt xllamacpp wheel) "
        "for one GGUF model; give the dashboard's OpenAI-compatible source http://HOST:PORT/v1.",
    )
    which = serve.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="the .gguf file to serve")
    which.add_argument("--embedded", metavar="NAME", help="serve an embedded model's verified GGUF (e.g. smollm2-135m)")
    serve.add_argument("--alias", help="the model name clients ask for (default: the file name or embedded name)")
    serve.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    serve.add_argument("--threads", type=int, default=1, help="CPU threads, for generation and prompts (default 1)")
    serve.add_argument("--api-key", help="require this key as 'Authorization: Bearer KEY' (default: no key)")
    serve.add_argument("--ctx", type=int, default=DEFAULT_CONTEXT,
                       help=f"context tokens per request (default {DEFAULT_CONTEXT})")
    serve.add_argument("--parallel", type=int, default=1, help="requests evaluated at once (default 1)")
    serve.set_defaults(handler=serve_command)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mollia_core", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "run", help="run the active-learning loop from a config file, or continue a project",
        description="--config builds the project of a config file (.json or .toml) and runs it to its planned "
        "iterations; --project continues a project made by run --config or in the dashboard, with its stored "
        "settings. Either way a killed run carries on where it stopped, and the project opens in the dashboard.",
    )
    which = run.add_mutually_exclusive_group(required=True)
    which.add_argument("--config", help="the run's configuration file (.json or .toml)")
    which.add_argument("--project", metavar="PATH_OR_NAME",
                       help="a project file (.mollia.sqlite), or the name of a project in the projects folder")
    run.add_argument("--iterations", type=int, metavar="N",
                     help="run N more iterations (default: up to the planned iterations)")
    run.add_argument("--output", help="output folder (default: the config's output_dir; for --project the run "
                     "folder it was made in, else <name>-run beside the project file)")
    run.add_argument("--fresh", action="store_true", help="with --config: discard a previous run in the output folder")
    run.add_argument(
        "--threads", type=int, default=int(os.environ.get("MOLLIA_TORCH_THREADS") or 2),
        help="torch CPU threads (default: $MOLLIA_TORCH_THREADS, else 2)",
    )
    run.set_defaults(handler=run_command)
    plan = commands.add_parser(
        "plan", help="time each LLM of a config's [panel] and print what label as you go, the sample and the whole pool cost",
        description="Times each LLM of the config's [panel] on this machine (a warm-up text, then the first "
        "seed texts) and prints, for the seed texts only and for the whole pool, the expected wall time and how "
        "many texts each LLM answers (texts already in the evidence cache cost nothing). Nothing is kept; the "
        "last line is the same as JSON.",
    )
    plan.add_argument("--config", required=True, help="the run's configuration file (.json or .toml)")
    plan.add_argument("--timed-texts", type=int, default=DEFAULT_TIMED_TEXTS,
                      help=f"seed texts timed per LLM after the warm-up (default {DEFAULT_TIMED_TEXTS})")
    plan.add_argument("--threads", type=int, default=int(os.environ.get("MOLLIA_TORCH_THREADS") or 2),
                      help="torch CPU threads (default: $MOLLIA_TORCH_THREADS, else 2)")
    plan.set_defaults(handler=plan_command)
    models = commands.add_parser("models", help="embedded LLMs")
    model_commands = models.add_subparsers(dest="models_command", required=True)
    prepare = model_commands.add_parser("prepare", help="assemble, verify and convert embedded models once")
    prepare.add_argument("names", nargs="*", help="models to prepare (default: all)")
    prepare.add_argument("--verify", action="store_true",
                         help="hash every prepared file in full and rebuild any copy that does not match")
    prepare.set_defaults(handler=models_prepare_command)
    _add_label_parser(commands)
    _add_serve_parser(commands)
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
