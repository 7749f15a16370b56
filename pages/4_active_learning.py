"""4 · Active learning: settings, "Next iteration" / "Run N iterations", learning curve, flagged texts."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from dashboard.common import USER_ERRORS, job_panel, require_data, require_project, show_error
from dashboard.shell import require_app_shell
from mollia_core import jobs
from mollia_core.loop import LoopConfig, LoopError

require_app_shell()
st.title("Active learning")
st.caption("Each iteration queries a batch of texts, has the LLMs answer the ones they have not answered yet "
           "(label as you go), labels them with MoLAM (label + negative labels), flags "
           "the ones where the previous model disagrees (d_anno), and retrains the classifier with the "
           "noise-robust loss W_d·CE + λ·L_neg.")
project = require_project()
require_data(project)


def _strategies() -> list[str]:
    try:
        from mollia_core.query import STRATEGIES
    except ImportError:
        return ["random"]
    return list(STRATEGIES)


settings = project.loop_settings()
strategies = _strategies()
with st.expander("Settings", expanded=not project.iterations()):
    c1, c2, c3 = st.columns(3)
    strategy = c1.selectbox("Query strategy", strategies,
                            index=strategies.index(settings.strategy) if settings.strategy in strategies else 0)
    batch = c2.number_input("Batch size B", 1, 1000, settings.batch_size)
    alpha = c3.number_input("α (weight of a flagged label)", 0.0, 1.0, settings.alpha, 0.05)
    c1, c2, c3 = st.columns(3)
    lambda_start = c1.number_input("λ start", 0.0, 5.0, settings.lambda_start, 0.1)
    lambda_end = c2.number_input("λ end", 0.0, 5.0, settings.lambda_end, 0.1)
    planned = c3.number_input(
        "Planned iterations (λ schedule)", 1, 200, settings.planned_iterations,
        help="λ grows linearly from λ start to λ end over this many iterations (Eq. 9) and stays at λ end "
             "after them. It does not limit the run: the Run button below runs as many more as you ask.")
    c1, c2, c3 = st.columns(3)
    modes = ["fast", "finetune"]
    mode = c1.selectbox("Learner", modes, index=modes.index(settings.learner_mode) if settings.learner_mode in modes else 0,
                        format_func={"fast": "fast (frozen encoder + head)", "finetune": "fine-tune (paper)"}.get)
    backbone = c2.text_input("Backbone", settings.backbone, help="all-MiniLM-L6-v2 ships offline; any Hugging Face id "
                             "you have locally (e.g. distilbert-base-uncased) works too.")
    random_state = c3.number_input("Random state", 0, 10_000, settings.random_state)
    c1, c2, c3 = st.columns(3)
    negative_learning = c1.checkbox("Negative learning (λ·L_neg, Eq. 8)", settings.negative_learning)
    discrepancy = c2.checkbox("Discrepancy weight (α for flagged labels, Eq. 7)", settings.discrepancy)
    seed_cv_folds = c3.number_input(
        "Folds for the accuracy estimate", 0, 20, settings.seed_cv_folds,
        help="Without gold validation labels, each iteration's accuracy is estimated on seed labels held out "
             "by K-fold: each fold trains the model once more (with fine-tuning, K+1 trainings per "
             "iteration). 0 turns the estimate off.")
try:
    new_settings = LoopConfig(strategy=strategy, batch_size=int(batch), alpha=float(alpha),
                              lambda_start=float(lambda_start), lambda_end=float(lambda_end),
                              planned_iterations=int(planned), negative_learning=negative_learning,
                              discrepancy=discrepancy, learner_mode=mode, backbone=backbone.strip(),
                              random_state=int(random_state), seed_cv_folds=int(seed_cv_folds))
except LoopError as exc:
    show_error(exc)
    st.stop()

curve = project.learning_curve()


def loop_status() -> None:
    answered = len(project.panel.covered_indices())
    st.write(f"Labeled: **{project.summary()['labeled']}** · still in the pool: **{project.pool_size()}** · "
             f"iterations done: **{jobs.completed_iterations(project)}** · texts the LLMs have answered: "
             f"**{answered}** of {project.store.n_texts}")


# The run is a job of the project (mollia_core.jobs): it goes on when this tab closes, and every tab sees it.
secrets = {"api_key": st.session_state.get("api_key") or None}  # a server LLM answering the queried texts
job = job_panel(project, "loop", live=loop_status, secrets=secrets)
busy = job is not None and job.running
c1, c2, c3 = st.columns([1, 1, 1])
next_clicked = c1.button("Next iteration", type="primary", icon=":material/skip_next:", disabled=busy)
n_more = c2.number_input("Iterations to run now", 1, 100, 5, label_visibility="collapsed")
run_clicked = c3.button(f"Run {int(n_more)} more iterations", icon=":material/fast_forward:", disabled=busy,
                        help="Runs in the server: closing or reloading this page does not stop it.")
last = project.store.last_iteration()
pool_empty = last is not None and project.pool_size() == 0
if (next_clicked or run_clicked) and pool_empty and not project.store.responses(pending_only=True):
    st.info("The pool is empty and no review is waiting for a training: there is nothing left to run. Accept or "
            "override labels on the Review page, then run again to retrain on them.")
elif next_clicked or run_clicked:
    n = 1 if next_clicked else int(n_more)
    try:
        jobs.start(project.path, "loop", until=jobs.completed_iterations(project) + n, settings=new_settings.to_dict(),
                   secrets=secrets)
    except USER_ERRORS as exc:
        show_error(exc)
    else:
        st.rerun()

if not busy and last is not None and last.status == "trained" and last.info.get("training_only"):
    st.info(f"The pool is empty: retrained on {last.metrics.get('reviews_used', 0)} pending reviews "
            f"(iteration {last.iteration}).")

if len(curve):
    st.subheader("Learning curve")
    has_gold = curve["validation_accuracy"].notna().any()
    has_estimate = curve["seed_cv_accuracy"].notna().any()
    figure = go.Figure()
    if has_gold:
        figure.add_scatter(x=curve["n_labeled"], y=curve["validation_accuracy"], mode="lines+markers",
                           name="accuracy on the validation split (gold)")
    elif has_estimate:
        estimated = curve.dropna(subset=["seed_cv_accuracy"])
        figure.add_scatter(
            x=estimated["n_labeled"], y=estimated["seed_cv_accuracy"], mode="lines+markers",
            name="estimated accuracy (held-out seed labels, 95 % interval)",
            error_y=dict(type="data", symmetric=False,
                         array=estimated["seed_cv_high"] - estimated["seed_cv_accuracy"],
                         arrayminus=estimated["seed_cv_accuracy"] - estimated["seed_cv_low"]),
        )
    figure.add_scatter(x=curve["n_labeled"], y=curve["annotator_agreement"], mode="lines+markers",
                       name="agreement with MoLAM's labels (pool) — not an accuracy", line=dict(dash="dot"))
    figure.update_layout(xaxis_title="labeled texts", yaxis_range=[0, 1], height=360,
                         yaxis_title="accuracy" if has_gold or has_estimate else "agreement",
                         margin=dict(t=10, b=10), legend=dict(orientation="h", y=-0.25))
    st.plotly_chart(figure)
    if not has_gold and has_estimate:
        st.caption("No gold validation labels: the accuracy is an estimate. At each iteration the model is "
                   "trained again K times, each time without one fold of the seed labels, and scored on the "
                   "seeds it did not see. The dotted line only says how often the model agrees with MoLAM.")
    elif not has_gold:
        st.caption("No gold validation labels and too few seed labels for an estimate (or it is turned off in "
                   "the settings): the dotted line only says how often the model agrees with MoLAM.")
    st.subheader("Flagged texts (d_anno) per iteration")
    st.caption("A text is flagged when MoLAM's label differs from the previous model's prediction: "
               "it trains with weight α. Review them on the Review page.")
    st.bar_chart(curve.set_index("iteration")["n_flagged"], height=200)
    st.dataframe(curve, hide_index=True)
else:
    st.info("No iteration yet. The first click trains on the seeds (iteration 0) and runs the iterations asked.")
