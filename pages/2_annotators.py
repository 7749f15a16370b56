"""2 · Annotators: choose the LLM panel, edit the prompt, run the evidence, see each LLM on the seeds."""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

import pandas as pd
import streamlit as st

from dashboard.common import USER_ERRORS, job_panel, require_data, require_project, show_error
from dashboard.shell import require_app_shell
from mollia_core.display import markdown_text
from mollia_core import jobs
from mollia_core.evidence import EvidenceError
from mollia_core.project import MAX_DEMONSTRATIONS_PER_CLASS, AnnotatorSpec

require_app_shell()
st.title("Annotators")
project = require_project()
require_data(project)


def _embedded_models() -> dict:
    try:
        from mollia_core.evidence.embedded import EMBEDDED_MODELS
    except ImportError:
        return {}
    return EMBEDDED_MODELS


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


# ---------------------------------------------------------------- panel
st.header("LLM panel")
panel = project.panel()
in_panel = {s.display_name for s in panel}
embedded = _embedded_models()
if project.get_setting("panel") is None:
    st.info("No panel saved yet: the embedded models are ticked below. Press **Save panel** to use them, "
            "or replay an evidence file.")
with st.form("panel_form"):
    st.markdown("**Embedded models** (ship inside PyPI packages, run offline on this machine)")
    chosen = []
    first_time = not panel
    for name, model in embedded.items():
        label = markdown_text(f"{getattr(model, 'title', name)} · {name}")
        if st.checkbox(label, value=first_time or name in in_panel, key=f"emb_{name}"):
            chosen.append(AnnotatorSpec(kind="embedded", model=name))
    if not embedded:
        st.caption("Embedded models are not installed: see the README's set-up command.")
    st.markdown("**Hugging Face model** (hub id or local folder)")
    hf_current = next((s for s in panel if s.kind == "hf"), None)
    c1, c2 = st.columns([3, 1])
    hf_id = c1.text_input("Model id", value=hf_current.model if hf_current else "",
                          placeholder="e.g. Qwen/Qwen2.5-7B-Instruct")
    quantization = c2.selectbox("Precision", ["auto", "4bit", "bf16"],
                                help=f"auto = 4-bit where CUDA is present ({'yes' if _cuda() else 'no'} here), bf16 otherwise")
    st.markdown("**Inference server** (OpenAI-compatible: vLLM, llama.cpp, Ollama)")
    server_current = next((s for s in panel if s.kind == "server"), None)
    c1, c2, c3 = st.columns(3)
    base_url = c1.text_input("Base URL", value=server_current.base_url if server_current else "",
                             placeholder="http://localhost:8000/v1")
    server_model = c2.text_input("Model name", value=server_current.model if server_current else "")
    c3.text_input("API key (optional)", type="password", key="api_key",
                  help="Kept in this browser session only: never stored in the project or exported.")
    replays = [s for s in panel if s.kind == "replay"]
    if replays:
        st.markdown("**Replayed evidence** (imported from a file)")
        for spec in replays:
            if st.checkbox(markdown_text(spec.display_name), value=True, key=f"replay_{spec.model}"):
                chosen.append(spec)
    if st.form_submit_button("Save panel", type="primary", icon=":material/save:"):
        if hf_id.strip():
            chosen.append(AnnotatorSpec(kind="hf", model=hf_id.strip(), quantization=quantization))
        if base_url.strip() or server_model.strip():
            if not (base_url.strip() and server_model.strip()):
                st.error("A server needs both its base URL and the model name.")
                st.stop()
            chosen.append(AnnotatorSpec(kind="server", model=server_model.strip(), base_url=base_url.strip()))
        try:
            project.set_panel(chosen)
        except USER_ERRORS as exc:
            show_error(exc)
        else:
            st.rerun()

with st.expander("Replay an evidence file (no LLM needed)"):
    st.caption("A JSONL file of evidence records (the project's evidence format) for these texts: "
               "each model in it joins the panel.")
    evidence_file = st.file_uploader("Evidence file", type=["jsonl"], key="evidence_upload")
    if evidence_file is not None and st.button("Import evidence", icon=":material/upload:"):
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / Path(evidence_file.name).name
            path.write_bytes(evidence_file.getvalue())
            try:
                added = project.import_evidence_file(path)
            except (*USER_ERRORS, ValueError) as exc:
                show_error(exc)
            else:
                st.success("Imported " + ", ".join(f"{n} records of {markdown_text(m)}" for m, n in added.items()))
                st.rerun()

# ---------------------------------------------------------------- prompt
st.header("Prompt")
try:
    from mollia_core.evidence.prompt import DEFAULT_TEMPLATE, PromptTemplate
except ImportError:  # prompt module not installed
    DEFAULT_TEMPLATE, PromptTemplate = None, None
if PromptTemplate is not None:
    template_text = st.text_area(
        "Template ({labels} and {text} are filled in; keep {text} last so the shared prefix is reused)",
        value=project.prompt_template or DEFAULT_TEMPLATE, height=140, key="template_text",
    )
    with st.form("label_meaning_form"):
        st.markdown("**What the labels mean** (told to every LLM; leave blank to give none)")
        saved = project.label_descriptions
        edited = {label: st.text_input(markdown_text(label), value=saved.get(label, ""), key=f"describe_{label}",
                                       placeholder="e.g. an ordinary, legitimate email")
                  for label in project.labels}
        per_class = st.number_input(
            "Seed examples per label shown in the prompt", min_value=0, max_value=MAX_DEMONSTRATIONS_PER_CLASS,
            value=project.demonstrations_per_class, step=1,
            help="Chosen from the seed labels; they sit in the shared prompt prefix, paid for once per model. "
                 "A seed shown as an example is scored with another example of its label in its place.")
        if st.form_submit_button("Save descriptions and examples"):
            try:
                project.set_label_descriptions(edited)
                project.set_demonstrations_per_class(int(per_class))
            except USER_ERRORS as exc:
                show_error(exc)
            else:
                st.rerun()
    sample_id = project.seed_candidates(1)[0]
    try:
        preview = replace(project.prompt(), template=template_text).render(
            project.texts[project.index_of(sample_id)], project.labels)
    except USER_ERRORS + (EvidenceError,) as exc:
        show_error(exc)
    else:
        st.caption(f"Preview on text {markdown_text(sample_id)} (completion form, as a base model reads it; chat "
                   "models get it in their chat template, with the examples as earlier turns of the conversation)")
        st.code(preview, language=None, wrap_lines=True)
        c1, c2 = st.columns(2)
        try:
            if c1.button("Save template", disabled=template_text == (project.prompt_template or DEFAULT_TEMPLATE)):
                project.set_prompt_template(None if template_text == DEFAULT_TEMPLATE else template_text)
                st.rerun()
            if c2.button("Reset to the default", disabled=project.prompt_template is None):
                project.set_prompt_template(None)
                st.session_state.pop("template_text", None)
                st.rerun()
        except USER_ERRORS as exc:
            show_error(exc)

# ---------------------------------------------------------------- run
st.header("Evidence")
n_texts = project.summary()["texts"]
panel = project.panel()
if not panel:
    st.info("Choose at least one LLM above (or replay an evidence file).")
    st.stop()


def evidence_table() -> None:
    counts, needed = project.evidence_counts(), project.panel.needed_indices()
    st.dataframe(pd.DataFrame([{"LLM": s.display_name, "kind": s.kind, "texts with evidence":
                                counts.get(s.display_name, 0), "needed now": len(needed), "of": n_texts,
                                "still to answer": len(project.panel.missing_evidence(s.display_name, needed))}
                               for s in panel]), hide_index=True)


def evidence_plan(disabled: bool) -> None:
    """Which texts the LLMs answer: as the loop needs them (the default), or every text first."""
    modes = {"on-demand": "Label as you go: the seed texts, a sample for MoLAM's self-training, then what each "
                          "iteration queries (answered as a step of the loop)",
             "full": "Label everything: every text first (MoLAM then reads the whole pool)"}
    mode = st.radio("Which texts the LLMs answer", list(modes), format_func=modes.get, disabled=disabled,
                    index=list(modes).index(project.panel.evidence_mode), key=f"evidence_mode_{project.name}")
    sample = project.panel.self_training_sample
    if mode == "on-demand":
        whole = st.checkbox("Self-training sample: the whole pool", value=sample is None, disabled=disabled,
                            key=f"whole_pool_{project.name}")
        if not whole:
            sample = int(st.number_input("Self-training sample (unlabeled pool texts answered up front)", 0, 100_000,
                                         value=200 if sample is None else sample, step=50, disabled=disabled,
                                         key=f"sample_{project.name}"))
        else:
            sample = None
    if (mode, sample) != (project.panel.evidence_mode, project.panel.self_training_sample):
        try:
            project.panel.set_evidence_plan(mode, sample)
        except USER_ERRORS as exc:
            show_error(exc)


# The run is a job of the project (mollia_core.jobs): it goes on when this tab closes, and every tab sees it.
secrets = {"api_key": st.session_state.get("api_key") or None}
job = job_panel(project, ("evidence", "llm_value"), live=evidence_table, secrets=secrets)
evidence_plan(disabled=job is not None and job.running)
needed = project.panel.needed_indices()
runnable = [s for s in panel if s.kind != "replay" and project.panel.missing_evidence(s.display_name, needed)]


def plan_section(specs, disabled: bool) -> None:
    """Each LLM timed on this machine, and what the seed texts and the whole pool would cost."""
    from mollia_core.plan import format_seconds, measure_rates, plan_choices

    with st.expander("Plan: how long the evidence takes, timed on this machine"):
        st.caption("Times each LLM below on the first seed texts, after a warm-up text that loads it. Texts already "
                   "answered or in the evidence cache cost nothing. Label as you go counts the planned iterations' "
                   "queries (batch size x planned iterations of the Active learning page's settings).")
        if st.button("Time the LLMs", icon=":material/timer:", disabled=disabled, key="plan_time"):
            with st.spinner("Timing the LLMs (each one is loaded once)…"):
                try:
                    rates = measure_rates(project, specs, api_key=st.session_state.get("api_key") or None)
                    st.session_state["plan"] = (project.name, plan_choices(project, rates), rates)
                except USER_ERRORS as exc:
                    show_error(exc)
        name, choices, rates = st.session_state.get("plan", (None, None, None))
        if name != project.name:
            return
        st.dataframe(pd.DataFrame([{"LLM": r.model, "seconds per text": round(r.seconds_per_text, 3),
                                    "warm-up (loading + first text), s": round(r.warmup_s, 1)} for r in rates]),
                     hide_index=True)
        st.dataframe(pd.DataFrame([{"evidence for": c.name, "expected wall time": format_seconds(c.expected_s),
                                    **{f"texts {m} answers": n for m, n in c.texts_per_model.items()}}
                                   for c in choices]), hide_index=True)


if runnable:
    busy = job is not None and job.running
    plan_section(runnable, disabled=busy)
    on_demand = project.panel.evidence_mode == "on-demand"
    if st.button(f"Run evidence ({len(runnable)} LLM{'s' if len(runnable) > 1 else ''}, {len(needed)} texts)",
                 type="primary", icon=":material/play_arrow:", disabled=busy,
                 help="Runs in the server: closing or reloading this page does not stop it."
                      + (" MoLAM is fitted as soon as the seed texts are answered, and again after the sample."
                         if on_demand else "")):
        try:
            jobs.start(project.path, "evidence", secrets=secrets, models=[s.display_name for s in runnable])
        except USER_ERRORS as exc:
            show_error(exc)
        else:
            st.rerun()
elif len(needed) == n_texts:
    st.success("Every LLM of the panel has evidence for every text.")
else:
    st.success(f"Every LLM of the panel has answered the {len(needed)} texts needed now; the active-learning loop "
               "asks them for each iteration's queried texts as it runs.")

# ---------------------------------------------------------------- accuracy on seeds
answered = len(project.panel.covered_indices())
if answered and project.seeds():
    try:
        accuracy = project.llm_seed_accuracy()
    except USER_ERRORS as exc:
        st.info(f"Each LLM's accuracy on the seed labels shows once they are answered: {exc}")
    else:
        st.header("Each LLM on the seed labels")
        st.caption(f"Zero-shot accuracy (most probable label) on the {len(project.seeds())} seed labels.")
        st.dataframe(pd.DataFrame({"LLM": list(accuracy), "accuracy on seeds": list(accuracy.values())}),
                     hide_index=True, column_config={"accuracy on seeds": st.column_config.ProgressColumn(
                         format="%.2f", min_value=0.0, max_value=1.0)})
elif answered:
    st.info("Add seed labels on the Data page to see each LLM's accuracy on them.")

# ---------------------------------------------------------------- which LLMs earn their cost
values = project.annotation.llm_value()
report = project.fit_report()
if not values and report is not None and report.estimates is not None and len(project.panel_models()) > 1:
    st.header("Which LLMs earn their cost")
    st.caption("MoLAM cross-validated on the seed labels with each LLM left out, on the folds of the last fit: "
               "one more fit per fold and LLM, so it runs apart from Fit MoLAM, as a job of the project.")
    if st.button("Measure what each LLM adds", icon=":material/balance:", disabled=job is not None and job.running):
        try:
            jobs.start(project.path, "llm_value")
        except USER_ERRORS as exc:
            show_error(exc)
        else:
            st.rerun()
if values:
    st.header("Which LLMs earn their cost")
    full = values[0]
    st.caption(f"MoLAM's accuracy cross-validated on the {full.n_seeds} seed labels with each LLM left out, on the "
               f"same folds as the whole panel ({full.full_accuracy:.3f}; measured after the last fit on the MoLAM page). "
               "Seconds per text: measured while this project collected the LLM's evidence (answers from the "
               "evidence cache included).")
    st.dataframe(pd.DataFrame([{
        "LLM": v.model, "MoLAM without it": v.without_accuracy, "change": v.without_accuracy - v.full_accuracy,
        "standard error": v.difference_se,
        "seconds per text": "not measured" if v.seconds_per_text is None else f"{v.seconds_per_text:.2f}",
    } for v in values]), hide_index=True, column_config={
        name: st.column_config.NumberColumn(format="%.3f") for name in ("MoLAM without it", "change", "standard error")})
    for v in values:
        if v.adds_nothing:
            saving = ("its speed was not measured" if v.seconds_per_text is None
                      else f"dropping it would save about {v.seconds_per_text * 1000 / 60:.1f} minutes per 1,000 texts")
            st.info(f"{markdown_text(v.model)} adds nothing here: without it MoLAM's cross-validated accuracy is "
                    f"{v.without_accuracy:.3f} against {v.full_accuracy:.3f}, within one standard error "
                    f"({v.difference_se:.3f}); {saving}.", icon=":material/savings:")
