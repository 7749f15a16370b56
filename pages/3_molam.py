"""3 · MoLAM: fit the annotation model on the seeds; its honest accuracy beside each LLM, vote and mean."""

from __future__ import annotations

from dataclasses import asdict

import pandas as pd
import plotly.express as px
import streamlit as st

from dashboard.common import USER_ERRORS, job_panel, require_data, require_project, show_error
from dashboard.shell import require_app_shell
from mollia_core import jobs
from mollia_core.display import chart_text, markdown_text
from mollia_core.project import AnnotatorSettings

require_app_shell()
st.title("MoLAM")
st.caption("The mixture-of-LLMs annotation model: a meta-learner over every LLM's evidence, trained on the seeds "
           "and self-trained on confident texts; it gives a label, its probability and the negative labels.")
project = require_project()
require_data(project)

settings = project.annotator_settings()
# Fit MoLAM (its 5-fold check of every method) is a job of the project (mollia_core.jobs), not of this tab.
job = job_panel(project, "fit")
busy = job is not None and job.running
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
    refit = st.checkbox("Refit on reviewed labels", settings.refit_on_reviews,
                        help="Before the loop labels the next batch, MoLAM is fitted again on the seeds plus every "
                             "label accepted or overridden on the Review page (our extension of the paper's "
                             "Algorithm 1, which fits once on the seeds; on 5 TREC seed sets it raised MoLAM's "
                             "accuracy on the queried texts by 2.4 points, benchmarks/review_effort.py).")
    fit = st.form_submit_button("Fit MoLAM", type="primary", icon=":material/model_training:",
                                disabled=busy, help="Runs in the server: closing or reloading this page "
                                "does not stop it; fitting cannot stop halfway.")
if fit:
    try:
        project.dataset.require_seeds()  # said at once, not by a job that fails
        jobs.start(project.path, "fit", settings=asdict(AnnotatorSettings(
            method=method, sigma=float(sigma), delta=float(delta), random_state=int(seed), refit_on_reviews=refit)))
    except USER_ERRORS as exc:
        show_error(exc)
        st.stop()
    st.rerun()

report = project.fit_report()
if report is None:
    st.info("Not fitted yet. It needs the LLM evidence (Annotators page) and the seed labels (Data page).")
    st.stop()

st.caption(f"Fitted {report.fitted_at} on {report.n_seeds} seed labels"
           + (", with a text classifier as one more member of the panel: trained on the seeds, then on MoLAM's own "
              "labels of the other texts (each text scored by a model that never saw its label)." if report.uses_text_member
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

st.subheader("Reliability on the seeds (out-of-fold)")
labeled_accuracy = report.labeled_accuracy_estimate()
if labeled_accuracy is None or not labeled_accuracy.reliability:
    st.caption("Fit MoLAM with at least 5 seed labels to see whether its probabilities mean what they say.")
else:
    bins = pd.DataFrame([{"MoLAM's probability (out-of-fold)": b.predicted, "observed accuracy": b.observed,
                          "seeds": b.n, "bin": f"{b.low:.2f}-{b.high:.2f}"} for b in labeled_accuracy.reliability])
    reliability = px.scatter(bins, x="MoLAM's probability (out-of-fold)", y="observed accuracy", size="seeds",
                             text="seeds", hover_data=["bin"], range_x=[0, 1.02], range_y=[0, 1.05])
    reliability.add_shape(type="line", x0=0, y0=0, x1=1, y1=1, line=dict(dash="dot", color="#7f7f7f"))
    reliability.update_traces(textposition="top center")
    reliability.update_layout(height=320, margin=dict(t=10, b=10))
    st.plotly_chart(reliability, key="reliability_plot")
    st.caption(
        f"Each point: the seeds whose probability from a MoLAM fitted without them fell in one bin; x = their mean "
        f"probability, y = the share MoLAM got right, the number = how many seeds ({labeled_accuracy.n_seeds} in "
        "all). On the dotted diagonal a probability means what it says. The labeled set's estimate (Review and "
        f"Export pages) recalibrates MoLAM's probabilities by the temperature fitted on these seeds, T = "
        f"{labeled_accuracy.temperature:.2f} (above 1: MoLAM is over-confident, below 1: under-confident)."
    )

annotation = project.annotation_frame()
annotation = annotation[annotation["label"].notna()]  # label as you go: texts no LLM answered have no label yet
c1, c2, c3 = st.columns(3)
c1.metric("Texts annotated", f"{len(annotation)} of {project.store.n_texts}",
          help="MoLAM labels the texts every LLM has answered: with label as you go, the seed texts, the "
               "self-training sample and the texts the loop queried.")
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
