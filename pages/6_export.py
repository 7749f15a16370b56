"""6 · Export: the labeled set as CSV, JSONL or Parquet (an export imports back unchanged)."""

from __future__ import annotations

import json

import streamlit as st

from dashboard.common import USER_ERRORS, require_data, require_project, show_error
from dashboard.estimate import show_labeled_set_estimate
from dashboard.shell import require_app_shell
from mollia_core.export import MIME_TYPES, add_parquet_metadata, export_metadata, molam_accuracy_estimate, to_bytes

require_app_shell()
st.title("Export")
project = require_project()
require_data(project)

scope = st.radio(
    "Which texts", ["labeled", "all"], horizontal=True, key="export_scope",
    format_func={"labeled": "Labeled set (seeds, MoLAM's labels in the loop, overrides)",
                 "all": "Every text (MoLAM's label where the loop has not labeled it)"}.get,
)
frame = project.export_frame(scope)
if frame.empty:
    st.info("Nothing to export yet: take seed labels on the Data page first.")
    st.stop()
counts = frame["source"].value_counts()
st.write(f"**{len(frame)}** texts · " + " · ".join(f"{n} {source}" for source, n in counts.items()))
if scope == "all" and len(frame) < project.store.n_texts:
    st.caption(f"{project.store.n_texts - len(frame)} texts are left out: not every LLM of the panel has answered them "
               "yet (label as you go), so MoLAM has no label for them. Label everything on the Annotators page "
               "to have them all.")
st.caption("Columns: id, text, label, source (seed / accept / override / molam), molam_probability, negative_labels, "
           "flag (d_anno), iteration, then your original columns.")
neutralize = st.checkbox(
    "Make the CSV safe to open in a spreadsheet", value=True, key="export_neutralize_formulas",
    help="Cells that start with = + - @, a tab or a carriage return get a leading ' so that a spreadsheet "
         "shows them as text instead of running them as formulas; importing the CSV removes it again. "
         "JSONL and Parquet are always exact.",
)
labeled_estimate = show_labeled_set_estimate(project, scope)
report = project.fit_report()
metadata = export_metadata(
    frame, molam_accuracy_estimate(report.cv_accuracy, report.n_seeds) if report else None,
    labeled_estimate=labeled_estimate, project=project.name, labels=list(project.labels),
    models=project.panel_models(),
)
columns = st.columns(4)
for column, fmt in zip(columns, ("csv", "jsonl", "parquet")):
    with column:
        try:
            data = to_bytes(frame, fmt, neutralize_formulas=neutralize)
            if fmt == "parquet":
                data = add_parquet_metadata(data, metadata)
        except USER_ERRORS as exc:
            show_error(exc)
            continue
        st.download_button(
            f"Download {fmt.upper()}", data=data, file_name=f"{project.name}-labeled.{fmt}",
            mime=MIME_TYPES[fmt], icon=":material/download:", key=f"download_{fmt}", width="stretch",
        )
columns[3].download_button(
    "Download metadata", data=json.dumps(metadata, indent=2, ensure_ascii=False),
    file_name=f"{project.name}-labeled.meta.json", mime="application/json", icon=":material/download:",
    key="download_metadata", width="stretch",
    help="How far each source's labels can be trusted: seeds, accepts and overrides are human labels (taken "
         "as given); for MoLAM's labels, the estimate shown above (from MoLAM's calibrated probabilities, with "
         "its 95 % interval) and the accuracy cross-validated on the seeds. "
         "A Parquet download carries it inside the file.",
)
st.dataframe(frame.assign(negative_labels=frame["negative_labels"].map(", ".join)).head(200), hide_index=True)
