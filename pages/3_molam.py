"""3 · MoLAM: fit the annotation model on the seeds; its honest accuracy beside each LLM, vote and mean."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from dashboard.common import USER_ERRORS, require_data, require_project, show_error
from dashboard.shell import require_app_shell
from mollia_core.display import chart_text, markdown_text
from mollia_core.project import AnnotatorSettings

require_app_shell()
st.title("MoLAM")
st.caption("The mixture-of-LLMs annotation model: a meta-learner over every LLM's evidence, trained on the seeds "
           "and self-trained on confident texts; it gives a label, its probability and the negative labels.")
project = require_project()
require_data(project)

settings = project.annotator_settings()
with st.form("molam_form"):
    c1, c2, c3, c4 = st.columns(4)
    methods = {"molam": "MoLAM (LLMs + text classifier)", "mol": "MoL (seeds only, LLMs + text)",
               "molam-llm-only": "MoLAM, LLM evidence only", "molam-paper": "MoLAM, paper's recipe (XGBoost, LLMs only)",
               "mol-paper": "MoL, paper's recipe (XGBoost, LLMs only)"}
    method = c1.selectbox("Model", list(methods), index=list(methods).index(settings.method)
                          if settings.method in methods else 0, format_func=methods.get)
    sigma = c2.number_input("Self-training threshold σ", 0.5, 0.999, settings.sigma, 0.01, format="%.3f")
    delta = c3.number_input("Negative-label threshold δ", 0.0, 0.5, settings.delta, 0.001, format="%.4f")
    seed = c4.number_input("Random state", 0, 10_000, settings.random_state)
    fit = st.form_submit_button("Fit MoLAM", type="primary", icon=":material/model_training:")
if fit:
    with st.spinner("Fitting MoLAM and cross-validating every method on the seeds…"):
        try:
            project.fit_annotator(AnnotatorSettings(method=method, sigma=float(sigma), delta=float(delta),
                                                    random_state=int(seed)))
        except USER_ERRORS as exc:
            show_error(exc)
            st.stop()
    st.rerun()

report = project.fit_report()
if report is None:
    st.info("Not fitted yet. It needs the LLM evidence (Annotators page) and the seed labels (Data page).")
    st.stop()

st.caption(f"Fitted {report.fitted_at} on {report.n_seeds} seed labels"
           + (", with the text classifier trained on them as one more member of the panel." if report.uses_text_member
              else ", on the LLMs' evidence alone."))
st.subheader("Accuracy on the seeds (cross-validated)")
estimates = report.accuracy_estimates()
for warning in estimates.warnings if estimates is not None else ():
    st.warning(markdown_text(warning), icon=":material/warning:")
if estimates is not None and estimates.methods:
    st.caption(f"Estimated by {estimates.n_folds}-fold cross-validation on the seed labels alone, every method on "
               "the same folds; no other label is used, so it is an honest estimate. Whiskers show the 95 % "
               "interval (Wilson) over the held-out seeds.")
    table = pd.DataFrame([{"method": name, "accuracy": e.accuracy, "95 % low": e.low, "95 % high": e.high,
                           "seeds": e.n} for name, e in estimates.methods.items()])
    error = {"error_y": table["95 % high"] - table["accuracy"], "error_y_minus": table["accuracy"] - table["95 % low"]}
else:
    st.caption("Estimated by cross-validation on the seed labels alone — no other label is used, "
               "so it is an honest estimate. Bars show the mean, whiskers the spread over folds.")
    table = pd.DataFrame(
        [{"method": name, "accuracy": mean, "std": std} for name, (mean, std) in report.cv_accuracy.items()]
    )
    error = {"error_y": "std"} if not table.empty else {}
if not table.empty:
    figure = px.bar(table.assign(method=table["method"].map(chart_text)), x="method", y="accuracy", **error,
                    range_y=[0, 1],
                    color=table["method"].eq("MoLAM").map({True: "MoLAM", False: "other"}),
                    color_discrete_map={"MoLAM": "#d62728", "other": "#7f7f7f"})
    figure.update_layout(showlegend=False, height=320, margin=dict(t=10, b=10))
    st.plotly_chart(figure)
    st.dataframe(table, hide_index=True, column_config={
        name: st.column_config.NumberColumn(format="%.3f") for name in ("accuracy", "std", "95 % low", "95 % high")})

annotation = project.annotation_frame()
c1, c2, c3 = st.columns(3)
c1.metric("Texts annotated", len(annotation))
c2.metric("With negative labels", report.n_with_negatives,
          help="Texts for which at least one label is ruled out by every LLM (z < δ).")
c3.metric("Confident (p ≥ σ)", int((annotation["probability"] >= settings.sigma).sum()))
st.subheader("Confidence of MoLAM's labels")
histogram = px.histogram(annotation.assign(label=annotation["label"].map(chart_text)), x="probability", color="label",
                         nbins=20, range_x=[0, 1])
histogram.update_layout(height=320, margin=dict(t=10, b=10), bargap=0.05)
st.plotly_chart(histogram)
st.subheader("Labels MoLAM gives")
st.dataframe(annotation["label"].value_counts().rename_axis("label").reset_index(name="texts"), hide_index=True)
