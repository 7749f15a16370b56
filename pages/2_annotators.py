"""2 · Annotators: choose the LLM panel, edit the prompt, run the evidence, see each LLM on the seeds."""

from __future__ import annotations

import tempfile
import threading
from dataclasses import replace
from pathlib import Path

import pandas as pd
import streamlit as st

from dashboard.common import USER_ERRORS, progress_text, require_data, require_project, show_error
from dashboard.shell import require_app_shell
from mollia_core.display import markdown_text
from mollia_core.evidence import Cancelled, EvidenceError
from mollia_core.project import MAX_DEMONSTRATIONS_PER_CLASS, AnnotatorSpec, make_source

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


@st.cache_resource(show_spinner="Loading the model…", max_entries=2)
def cached_source(spec: AnnotatorSpec, template):
    """One loaded model per (spec, template), shared by reruns and sessions (never a server key)."""
    return make_source(spec, template)


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
        st.caption(f"Preview on text {markdown_text(sample_id)} (completion form; chat models wrap it in their "
                   "chat template)")
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
counts = project.evidence_counts()
n_texts = project.summary()["texts"]
panel = project.panel()
if not panel:
    st.info("Choose at least one LLM above (or replay an evidence file).")
    st.stop()
status = pd.DataFrame(
    [{"LLM": s.display_name, "kind": s.kind, "texts with evidence": counts.get(s.display_name, 0),
      "of": n_texts} for s in panel]
)
st.dataframe(status, hide_index=True)
runnable = [s for s in panel if s.kind != "replay" and counts.get(s.display_name, 0) < n_texts]
if runnable:
    c1, c2 = st.columns([1, 1])
    start = c1.button(f"Run evidence ({len(runnable)} LLM{'s' if len(runnable) > 1 else ''})", type="primary",
                      icon=":material/play_arrow:")
    c2.button("Cancel", icon=":material/stop:", key="cancel_evidence",
              help="Stops the run; what is done stays cached and the next run resumes there.")
    if start:
        bars = {s.display_name: st.progress(0.0, text=f"{markdown_text(s.display_name)}: waiting") for s in runnable}

        def report(model, p):
            bars[model].progress(min(p.done / max(p.total, 1), 1.0),
                                 text=f"{markdown_text(model)}: " + progress_text(p.done, p.total, p.rate, p.eta_s))

        cancel = threading.Event()
        try:
            sources = []
            for spec in runnable:
                if spec.kind == "server":  # never cached in memory: it would hold the key
                    sources.append((spec, make_source(spec, project.prompt(), st.session_state.get("api_key"))))
                else:
                    sources.append((spec, cached_source(spec, project.prompt())))
            project.run_evidence(sources, progress=report, cancel=cancel)
        except Cancelled:
            st.warning("Cancelled. What was done is kept; run again to resume.")
        except USER_ERRORS as exc:
            show_error(exc)
        else:
            st.rerun()
elif any(s.kind != "replay" for s in panel) or counts:
    st.success("Every LLM of the panel has evidence for every text.")

# ---------------------------------------------------------------- accuracy on seeds
if project.evidence() is not None and project.seeds():
    st.header("Each LLM on the seed labels")
    accuracy = project.llm_seed_accuracy()
    st.caption(f"Zero-shot accuracy (most probable label) on the {len(project.seeds())} seed labels.")
    st.dataframe(pd.DataFrame({"LLM": list(accuracy), "accuracy on seeds": list(accuracy.values())}),
                 hide_index=True, column_config={"accuracy on seeds": st.column_config.ProgressColumn(
                     format="%.2f", min_value=0.0, max_value=1.0)})
elif project.evidence() is not None:
    st.info("Add seed labels on the Data page to see each LLM's accuracy on them.")
