"""6 · Export: the labeled set as CSV, JSONL or Parquet (an export imports back unchanged)."""

from __future__ import annotations

import streamlit as st

from mollia_core.export import MIME_TYPES, to_bytes
from views.common import require_data, require_project

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
st.caption("Columns: id, text, label, source (seed / molam / override), molam_probability, negative_labels, "
           "flag (d_anno), iteration, then your original columns.")
columns = st.columns(3)
for column, fmt in zip(columns, ("csv", "jsonl", "parquet")):
    column.download_button(
        f"Download {fmt.upper()}", data=to_bytes(frame, fmt), file_name=f"{project.name}-labeled.{fmt}",
        mime=MIME_TYPES[fmt], icon=":material/download:", key=f"download_{fmt}", width="stretch",
    )
st.dataframe(frame.assign(negative_labels=frame["negative_labels"].map(", ".join)).head(200), hide_index=True)
