"""1 · Data: upload a CSV or open an example, pick the columns and the label set, take seed labels."""

from __future__ import annotations

import streamlit as st

from dashboard.common import USER_ERRORS, require_project, show_error
from dashboard.shell import require_app_shell
from mollia_core.dataset import DatasetError, open_table
from mollia_core.display import markdown_text
from mollia_core.project import DEFAULT_SEED_COUNT

NONE = "(none)"

require_app_shell()
st.title("Data")
project = require_project()


@st.cache_data(show_spinner=False, max_entries=4)
def _read_upload(data: bytes, name: str):
    """Parse an uploaded file once per content (never unpickled): the table and its warnings."""
    return open_table(data, name=name)


@st.cache_data(show_spinner="Loading the example…", max_entries=4)
def _example(name: str, n: int):
    from mollia_core.examples import load_example

    return load_example(name, n=n, random_state=0)


def choose_table():
    """The table the user is about to import (upload or example), or None."""
    origin = st.radio("Where is your data?", ["Upload a CSV", "Example dataset"], horizontal=True, key="data_origin")
    if origin == "Upload a CSV":
        upload = st.file_uploader(
            "CSV file (UTF-8, one text per row, a header line), or JSON Lines / JSON / Parquet",
            type=["csv", "tsv", "txt", "jsonl", "ndjson", "json", "parquet"], key="data_upload",
            help="Columns: the text, optionally an id and a label. Rows with a label can become seed labels.",
        )
        if upload is None:
            return None, ""
        try:
            table = _read_upload(upload.getvalue(), upload.name)
        except DatasetError as exc:
            show_error(exc)
            return None, ""
        for warning in table.warnings:  # read, but worth a look before importing (e.g. a missing header line)
            st.warning(markdown_text(warning), icon=":material/warning:")
        return table.frame, upload.name
    try:
        from mollia_core.examples import EXAMPLES, ExampleUnavailable
    except ImportError:
        st.warning("Example datasets are not available in this installation.")
        return None, ""
    names = list(EXAMPLES)
    name = st.selectbox("Example dataset", names, format_func=lambda n: f"{n} — {_describe(EXAMPLES[n])}",
                        key="example_name")
    n = st.number_input("Rows to use", min_value=50, max_value=20000, value=500, step=50, key="example_rows",
                        help="A random sample keeps evidence runs short on a CPU.")
    try:
        return _example(name, int(n)), f"example:{name}"
    except ExampleUnavailable as exc:  # its data package is not installed: the message says how
        show_error(exc)
        return None, ""


def _describe(example) -> str:
    return str(getattr(example, "description", example))


def import_form(frame, source_name: str) -> None:
    st.subheader("Preview")
    st.caption(f"{len(frame)} rows · {len(frame.columns)} columns (shown as plain text)")
    st.dataframe(frame.head(20), hide_index=True)
    columns = [str(c) for c in frame.columns]
    guess_text = next((c for c in columns if c.lower() in ("text", "sentence", "review", "content")), columns[0])
    guess_label = next((c for c in columns if c.lower() in ("label", "labels", "class", "category")), NONE)
    guess_id = next((c for c in columns if c.lower() in ("id", "text_id", "qid")), NONE)
    c1, c2, c3 = st.columns(3)
    text_column = c1.selectbox("Text column", columns, index=columns.index(guess_text), key="text_column")
    id_column = c2.selectbox("Id column (optional)", [NONE] + columns, index=([NONE] + columns).index(guess_id),
                             key="id_column")
    label_column = c3.selectbox("Label column (optional)", [NONE] + columns,
                                index=([NONE] + columns).index(guess_label), key="label_column")
    how = st.radio(
        "Label set",
        ["From the label column", "Typed"] if label_column != NONE else ["Typed"],
        horizontal=True, key="label_set_how",
    )
    labels = None
    if how == "Typed":
        typed = st.text_input("Labels, separated by commas", placeholder="e.g. sport, politics, tech", key="typed_labels")
        labels = [part.strip() for part in typed.split(",") if part.strip()]
    if st.button("Use this data", type="primary", icon=":material/check:"):
        if how == "Typed" and not labels:
            st.error("Type at least two labels, separated by commas.")
            return
        try:
            dataset = project.set_dataset(
                frame, text_column,
                id_column=None if id_column == NONE else id_column,
                label_column=None if label_column == NONE else label_column,
                labels=labels, source_name=source_name,
            )
        except USER_ERRORS as exc:
            show_error(exc)
        else:
            st.success(f"{len(dataset.texts)} texts imported with labels {markdown_text(', '.join(dataset.labels))}.")
            st.rerun()


def seed_section() -> None:
    st.header("Seed labels")
    seeds = project.seeds()
    labels = project.labels
    summary = project.summary()
    st.write(
        f"**{len(seeds)}** seed labels · {summary['pool']} texts in the pool"
        + (f" · {summary['validation']} held out for validation (gold labels, never used to train)"
           if summary["validation"] else "")
    )
    if project.iterations():
        st.info("Iterations have started: seeds are fixed. Change labels on the Review page.")
        return
    config = project.dataset_config
    if config["label_column"]:
        c1, c2 = st.columns([1, 3])
        n = c1.number_input("Seeds to take", min_value=1, max_value=10000, value=DEFAULT_SEED_COUNT, key="n_seeds")
        c2.write("")
        if c2.button(f"Take {int(n)} seeds from column '{markdown_text(config['label_column'])}'",
                     icon=":material/download_done:"):
            try:
                taken = project.take_seeds_from_column(int(n))
            except USER_ERRORS as exc:
                show_error(exc)
            else:
                st.success(f"{taken} rows with a label are now seeds.")
                st.rerun()
    with st.expander("Label texts by hand (keyboard: press the label's number)", expanded=not seeds):
        labeling_form(labels, seeds)


def labeling_form(labels, seeds) -> None:
    candidates = project.seed_candidates(DEFAULT_SEED_COUNT)
    todo = [t for t in candidates if t not in seeds and t not in st.session_state.get("skipped", set())]
    done = len([t for t in candidates if t in seeds])
    st.progress(done / max(len(candidates), 1), text=f"{done} / {len(candidates)} sampled texts labeled")
    if not todo:
        st.success("All sampled texts are labeled (or skipped).")
        return
    text_id = todo[0]
    st.caption(f"Text id {markdown_text(text_id)}")
    with st.container(border=True):
        st.text(project.dataset.text_of(text_id))
    shortcuts = [str(i + 1) for i in range(min(len(labels), 9))]
    columns = st.columns(min(len(labels), 6) + 1)
    for k, label in enumerate(labels):
        shortcut = shortcuts[k] if k < len(shortcuts) else None
        button_label = f"{k + 1} · {markdown_text(label)}" if shortcut else markdown_text(label)
        if columns[k % (len(columns) - 1)].button(button_label, key=f"seed_{text_id}_{k}", shortcut=shortcut,
                                                    width="stretch"):
            try:
                project.label_seed(text_id, label)
            except USER_ERRORS as exc:
                show_error(exc)
            else:
                st.rerun()
    if columns[-1].button("Skip", key=f"skip_{text_id}", shortcut="0", icon=":material/skip_next:"):
        st.session_state.setdefault("skipped", set()).add(text_id)
        st.rerun()
    if seeds:
        st.caption("Seed labels so far")
        rows = [{"id": t, "label": lab, "text": project.dataset.text_of(t)[:200]} for t, lab in seeds.items()]
        st.dataframe(rows, hide_index=True, height=200)


if project.has_dataset():
    config = project.dataset_config
    summary = project.summary()
    st.write(
        f"**{summary['texts']}** texts from {markdown_text(config['source_name'] or 'a table')} · text column "
        f"{markdown_text(config['text_column'])} · labels: {markdown_text(', '.join(project.labels))}"
    )
    st.dataframe(project.dataset.original_frame(rows=10), hide_index=True)
    if project.can_replace_dataset() and st.button("Use another table or other columns", icon=":material/undo:"):
        try:
            project.clear_dataset()
        except USER_ERRORS as exc:
            show_error(exc)
        else:
            st.rerun()
    seed_section()
else:
    frame, source_name = choose_table()
    if frame is not None:
        import_form(frame, source_name)
