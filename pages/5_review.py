"""5 · Review: every labeled text, filterable; one text's evidence as in the paper's Fig. 12; override."""

from __future__ import annotations

import pandas as pd
import streamlit as st
from plotly.subplots import make_subplots

from dashboard.common import USER_ERRORS, require_data, require_project, show_error
from dashboard.shell import require_app_shell
from mollia_core.display import chart_text, markdown_text

require_app_shell()
st.title("Review")
project = require_project()
require_data(project)

everything = project.labeled_texts()
if everything.empty:
    st.info("Nothing labeled yet: take seed labels on the Data page, then run iterations.")
    st.stop()

with st.container(border=True):
    c1, c2, c3, c4, c5 = st.columns([1, 1.4, 1.2, 1.4, 1])
    iterations = c1.multiselect("Iteration", sorted(everything["iteration"].unique().tolist()), key="f_iter")
    labels = c2.multiselect("Label", list(project.labels), key="f_label")
    sources = c3.multiselect("Source", sorted(everything["source"].unique().tolist()), key="f_source")
    low, high = c4.slider("MoLAM probability", 0.0, 1.0, (0.0, 1.0), 0.01, key="f_prob")
    flag = c5.selectbox("Flag (d_anno)", ["any", "flagged", "not flagged"], key="f_flag")
table = project.labeled_texts(
    iterations=iterations or None, labels=labels or None, sources=sources or None,
    min_probability=low if low > 0 else None, max_probability=high if high < 1 else None,
    flagged={"any": None, "flagged": True, "not flagged": False}[flag],
)
st.caption(f"{len(table)} of {len(everything)} labeled texts · "
           f"{int(everything['flag'].sum())} flagged · {int((everything['source'] == 'override').sum())} overridden. "
           "Select a row to see its evidence.")
shown = table.assign(negative_labels=table["negative_labels"].map(", ".join))
selection = st.dataframe(
    shown[["id", "text", "label", "source", "molam_probability", "negative_labels", "flag", "iteration"]],
    hide_index=True, on_select="rerun", selection_mode="single-row", key="review_table", height=320,
    column_config={"molam_probability": st.column_config.NumberColumn("MoLAM p", format="%.2f"),
                   "text": st.column_config.TextColumn(width="large")},
)
rows = selection.selection.rows if selection is not None else []
ids = table["id"].astype(str).tolist()
if not ids:
    st.stop()
picked = st.selectbox("Text to inspect (or select a row above)", ids, index=ids.index(str(table.iloc[rows[0]]["id"]))
                      if rows else None, placeholder="Choose a text id",
                      key=f"review_text_{rows[0] if rows else -1}")
if picked is None:
    st.stop()
text_id = picked
info = project.text_evidence(text_id)

st.subheader(f"Text {markdown_text(text_id)}")
with st.container(border=True):
    st.text(info.text)
c1, c2, c3, c4, c5 = st.columns(5)
# Metric values are Markdown too.
c1.metric("Label", markdown_text(info.label or "—"), help=f"source: {info.source}")
c2.metric("MoLAM", markdown_text(info.molam_label or "—"),
          f"p = {info.molam_probability:.2f}" if info.molam_probability is not None else None, delta_color="off",
          delta_arrow="off")
c3.metric("Majority vote", markdown_text(info.vote_label or "—"))
c4.metric("Mean probability", markdown_text(info.mean_label or "—"))
c5.metric("Flag (d_anno)", "flagged" if info.flag else "no", help="MoLAM's label differs from the previous model's")
st.write("Source: " + {"seed": "seed label (human)", "override": "human override", "molam": "MoLAM"}.get(
    info.source or "", str(info.source)) + (f" · iteration {info.iteration}" if info.iteration is not None else ""))
if info.negative_labels:
    st.write("Negative labels (ruled out by every LLM):")
    st.text(", ".join(info.negative_labels))

# Override: one click (or the label's number key).
st.write("**Set the label** (one click or press its number):")
columns = st.columns(min(len(info.labels), 6))
for k, label in enumerate(info.labels):
    if columns[k % len(columns)].button(
        f"{k + 1} · {markdown_text(label)}" if k < 9 else markdown_text(label), key=f"override_{text_id}_{k}",
        shortcut=str(k + 1) if k < 9 else None, type="primary" if label == info.label else "secondary",
        width="stretch",
    ):
        try:
            project.override(text_id, label)
        except USER_ERRORS as exc:
            show_error(exc)
        else:
            st.toast(f"Text {markdown_text(text_id)} is now human-labeled '{markdown_text(label)}'; used from the "
                     "next training on.")
            st.rerun()
if info.overrides:
    st.caption("Overrides of this text")
    st.dataframe(pd.DataFrame(info.overrides), hide_index=True)

# The LLM evidence, as in the paper's Fig. 12.
if info.models:
    st.subheader("What each LLM said")
    figure = make_subplots(rows=1, cols=2, subplot_titles=("probability of each label (z)",
                                                           "share of the sampled answers (c)"), shared_yaxes=True)
    label_ticks = [chart_text(label) for label in info.labels]
    for j, model in enumerate(info.models):
        color = f"hsl({int(360 * j / len(info.models))},55%,50%)"
        figure.add_bar(x=label_ticks, y=info.label_probs[j], name=chart_text(model), legendgroup=str(j),
                       marker_color=color, row=1, col=1)
        figure.add_bar(x=label_ticks, y=info.vote_shares[j], name=chart_text(model), legendgroup=str(j),
                       marker_color=color, showlegend=False, row=1, col=2)
    figure.update_layout(barmode="group", height=360, margin=dict(t=30, b=10), legend=dict(orientation="h", y=-0.25))
    figure.update_yaxes(range=[0, 1])
    st.plotly_chart(figure)
    answers = pd.DataFrame({
        "LLM": list(info.models),
        "most probable": [info.labels[int(z.argmax())] for z in info.label_probs],
        "no-label share": info.no_label_share,
        "sampled answers": [" | ".join(a) for a in info.answers],
    })
    st.dataframe(answers, hide_index=True, column_config={
        "no-label share": st.column_config.NumberColumn(format="%.2f")})
else:
    st.caption("No LLM evidence for this text.")
