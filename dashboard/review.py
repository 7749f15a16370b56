"""The Review page's parts (pages/5_review.py): the review queue with its keyboard flow, the table of every
labeled text with its bulk accept, and one text's evidence as in the paper's Fig. 12."""

from __future__ import annotations

import pandas as pd
import streamlit as st
from plotly.subplots import make_subplots

from dashboard.common import USER_ERRORS, show_error
from mollia_core.display import chart_text, markdown_text
from mollia_core.store import HUMAN_SOURCES

QUEUE_MODE, TABLE_MODE = "Review queue", "All labeled texts"
# The queue's current text (its id) and its place: a reviewed text leaves the queue, and the text that
# takes its place is the next one. The id also rides in the URL, so a reload comes back to it.
CURRENT_KEY, POSITION_KEY, TOAST_KEY = "review_current", "review_position", "review_toast"
TEXT_QUERY_PARAM = "text"
SOURCE_NAMES = {"seed": "seed label (human)", "override": "human override", "accept": "accepted MoLAM label (human)",
                "molam": "MoLAM"}
MAX_NUMBER_KEYS = 9


def _probability(value: float | None) -> str | None:
    return None if value is None or pd.isna(value) else f"p = {value:.2f}"


def _later_toast(message: str) -> None:
    """A toast shown by the next run: the rerun that follows an action would drop one shown now."""
    st.session_state[TOAST_KEY] = message


def _label_buttons(text_id: str, labels: tuple[str, ...], current: str | None) -> str | None:
    """One button per label (the first nine also on their number key); the label clicked, or None."""
    columns = st.columns(min(len(labels), 6))
    for k, label in enumerate(labels):
        if columns[k % len(columns)].button(
            f"{k + 1} · {markdown_text(label)}" if k < MAX_NUMBER_KEYS else markdown_text(label),
            key=f"override_{text_id}_{k}", shortcut=str(k + 1) if k < MAX_NUMBER_KEYS else None,
            type="primary" if label == current else "secondary", width="stretch",
        ):
            return label
    return None


def _override(project, text_id: str, label: str) -> bool:
    """Store a human label; False (and the reason shown) when it could not be stored."""
    try:
        project.override(text_id, label)
    except USER_ERRORS as exc:
        show_error(exc)
        return False
    _later_toast(f"Text {markdown_text(text_id)} is now human-labeled '{markdown_text(label)}'; used from the "
                 "next training on.")
    return True


def _evidence(info) -> None:
    """What each LLM said about one text, as in the paper's Fig. 12."""
    if not info.models:
        st.caption("No evidence from every LLM for this text yet: with label as you go, the LLMs answer a text "
                   "when it is a seed, in the self-training sample, or queried by the loop.")
        return
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


def _negative_labels(info) -> None:
    if info.negative_labels:
        st.write("Negative labels (ruled out by every LLM):")
        st.text(", ".join(info.negative_labels))


def pending_message(pending: int) -> None:
    if pending:
        st.info(f"{pending} review{'s' if pending != 1 else ''} not yet used by a training: they are used from the "
                "next iteration on (**Active learning** → Next iteration).", icon=":material/pending:")


# ------------------------------------------------------------------------ the review queue


def _queue_position(ids: list[str]) -> int:
    """Where the queue stands: at its current text while that is still queued, else at the same place."""
    current = st.session_state.get(CURRENT_KEY) or st.query_params.get(TEXT_QUERY_PARAM)
    if current in ids:
        return ids.index(current)
    return max(0, min(int(st.session_state.get(POSITION_KEY, 0)), len(ids) - 1))


def _go_to(ids: list[str], position: int, current: str | None = None) -> None:
    """Make ``current`` (default: the text at ``position``) the queue's current text and rerun."""
    position = max(0, min(position, len(ids) - 1))
    st.session_state[POSITION_KEY] = position
    st.session_state[CURRENT_KEY] = current if current is not None else (ids[position] if ids else None)
    st.rerun()


def _next_in_place(position: int) -> None:
    """After a review: the reviewed text leaves the queue, which is ranked again (the ranking learns from
    each review); the text now at the same place is the next one."""
    st.session_state[POSITION_KEY], st.session_state[CURRENT_KEY] = position, None
    st.rerun()


def _last_reviewed(project) -> str | None:
    """The id of the text reviewed last (the one undo gives back), or None."""
    responses = project.store.responses()
    return project.text_ids[responses[-1].text_index] if responses else None


def _undo(project, ids: list[str], position: int) -> None:
    text_id = _last_reviewed(project)
    if text_id is None:
        st.toast("Nothing to undo: no text has been accepted or overridden yet.")
        return
    try:
        project.review.undo(text_id)
    except USER_ERRORS as exc:
        show_error(exc)
        return
    _later_toast(f"Undid the last review, of text {markdown_text(text_id)}.")
    _go_to(ids, position, current=text_id)


def _key_buttons(project, ids: list[str], position: int, text_id: str) -> None:
    """Previous / next / accept / undo, each on its key; the second key of each (k, j, Ctrl+Z) on a button
    the page hides (a button takes one shortcut)."""
    c1, c2, c3, c4 = st.columns(4)
    previous = c1.button("Previous", key="review_previous", shortcut="Left", icon=":material/arrow_back:",
                         width="stretch", disabled=position == 0)
    following = c2.button("Next", key="review_next", shortcut="Right", icon=":material/arrow_forward:",
                          width="stretch", disabled=position >= len(ids) - 1)
    accept = c3.button("Accept MoLAM's label", key="review_accept", shortcut="A", type="primary",
                       icon=":material/check:", width="stretch")
    undo = c4.button("Undo last review", key="review_undo", shortcut="U", icon=":material/undo:", width="stretch")
    with st.container(key="review_key_aliases"):
        previous |= st.button("Previous (k)", key="review_previous_k", shortcut="K", disabled=position == 0)
        following |= st.button("Next (j)", key="review_next_j", shortcut="J", disabled=position >= len(ids) - 1)
        undo |= st.button("Undo (Ctrl+Z)", key="review_undo_ctrl_z", shortcut="Ctrl+Z")
    st.html("<style>.st-key-review_key_aliases { display: none; }</style>")
    if previous:
        _go_to(ids, position - 1)
    if following:
        _go_to(ids, position + 1)
    if accept:
        try:
            project.review.accept(text_id)
        except USER_ERRORS as exc:
            show_error(exc)
        else:
            _next_in_place(position)
    if undo:
        _undo(project, ids, position)


def review_queue(project, pending: int) -> None:
    c1, c2 = st.columns([1, 3], vertical_alignment="bottom")
    budget = c1.number_input(
        "Review budget per iteration", min_value=0, max_value=10_000, value=project.queue.budget(), step=1,
        help="How many texts to review between two trainings, the most likely wrong first. Reviews since the "
             "last training count against it.")
    if budget != project.queue.budget():
        try:
            project.queue.set_budget(int(budget))
        except USER_ERRORS as exc:
            show_error(exc)
    # The budget is per iteration: the reviews no training has used yet were made in this one.
    with st.spinner("Ranking the review queue…"):  # the first time: MoLAM's cross-validated labels on the seeds
        queue = project.queue.ranked(max(project.queue.budget() - pending, 0))
    c2.caption(f"{pending} of {project.queue.budget()} reviewed this iteration. {queue.attrs.get('ranking', '')}")
    if queue.empty:
        if project.queue.ranked(1).empty:
            st.success("Nothing left to review: every MoLAM label has been accepted or overridden. Run the next "
                       "iteration on **Active learning** for new ones.", icon=":material/task_alt:")
        else:
            st.success(f"This iteration's review budget ({project.queue.budget()} texts) is spent: the reviews are "
                       "used by the next iteration (**Active learning**). Raise the budget to review more now.",
                       icon=":material/task_alt:")
        _undo_only(project)
        return
    ids = queue["id"].astype(str).tolist()
    position = _queue_position(ids)
    row = queue.iloc[position]
    text_id = ids[position]
    st.session_state[POSITION_KEY], st.session_state[CURRENT_KEY] = position, text_id
    st.query_params[TEXT_QUERY_PARAM] = text_id
    info = project.text_evidence(text_id)

    st.progress((position + 1) / len(ids), text=f"Text {position + 1} of {len(ids)} · id {markdown_text(text_id)}"
                f" · iteration {int(row['iteration'])}")
    with st.container(border=True):
        st.text(info.text)
    c1, c2, c3 = st.columns(3)
    c1.metric("MoLAM's label", markdown_text(row["label"]), _probability(row["molam_probability"]),
              delta_color="off", delta_arrow="off", help="The label accepting keeps.")
    c2.metric("AL model's prediction", markdown_text(row["al_label"]) if pd.notna(row["al_label"]) else "—",
              _probability(row["al_probability"]), delta_color="off", delta_arrow="off",
              help="The classifier trained by the latest iteration.")
    c3.metric("Estimated chance the label is wrong", f"{row['wrong_chance']:.0%}",
              help="Learned on the human labels only (seeds, accepted and overridden reviews).")
    st.write(f"**Why it is in the queue:** {markdown_text(row['reasons'])}")
    _negative_labels(info)

    _key_buttons(project, ids, position, text_id)
    st.write("**Or set the label** (click or press its number):")
    label = _label_buttons(text_id, info.labels, None)
    if label is not None and _override(project, text_id, label):
        _next_in_place(position)
    st.caption("Keys: **→** or **j** next · **←** or **k** previous · **a** accept MoLAM's label · "
               f"**1**-**{min(len(info.labels), MAX_NUMBER_KEYS)}** set that label · **u** or **Ctrl+Z** undo the "
               "last review. Each review moves on to the next text.")
    _evidence(info)


def _undo_only(project) -> None:
    """With the queue empty, undo still gives the last reviewed text back."""
    if st.button("Undo last review", key="review_undo", shortcut="U", icon=":material/undo:"):
        _undo(project, [], 0)


# ------------------------------------------------------------------------ every labeled text


def _bulk_accept(project, table: pd.DataFrame) -> None:
    ids = table.loc[~table["source"].isin(HUMAN_SOURCES), "id"].astype(str).tolist()
    if not ids:
        return
    with st.popover(f"Accept all {len(ids)} shown", icon=":material/done_all:"):
        st.write(f"MoLAM's labels of the {len(ids)} MoLAM-labeled texts this filter shows become human labels, "
                 "used from the next training on. The review queue's Undo takes them back, the latest first.")
        if st.button(f"Yes, accept {len(ids)} labels", key="review_accept_many", type="primary"):
            try:
                accepted = project.review.accept_many(ids)
            except USER_ERRORS as exc:
                show_error(exc)
            else:
                _later_toast(f"Accepted {accepted} MoLAM label{'s' if accepted != 1 else ''} as human labels.")
                st.rerun()


def all_labeled_texts(project, everything: pd.DataFrame) -> None:
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
               f"{int(everything['flag'].sum())} flagged · {int((everything['source'] == 'override').sum())} "
               f"overridden · {int((everything['source'] == 'accept').sum())} accepted. "
               "Select a row to see its evidence.")
    _bulk_accept(project, table)
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
        return
    picked = st.selectbox("Text to inspect (or select a row above)", ids,
                          index=ids.index(str(table.iloc[rows[0]]["id"])) if rows else None,
                          placeholder="Choose a text id", key=f"review_text_{rows[0] if rows else -1}")
    if picked is not None:
        _text_detail(project, picked)


def _text_detail(project, text_id: str) -> None:
    info = project.text_evidence(text_id)
    st.subheader(f"Text {markdown_text(text_id)}")
    with st.container(border=True):
        st.text(info.text)
    c1, c2, c3, c4, c5, c6 = st.columns(6)
    # Metric values are Markdown too.
    c1.metric("Label", markdown_text(info.label or "—"), help=f"source: {info.source}")
    c2.metric("MoLAM", markdown_text(info.molam_label or "—"), _probability(info.molam_probability),
              delta_color="off", delta_arrow="off")
    c3.metric("AL model", markdown_text(info.al_label or "—"), _probability(info.al_probability),
              delta_color="off", delta_arrow="off", help="The classifier trained by the latest iteration.")
    c4.metric("Majority vote", markdown_text(info.vote_label or "—"))
    c5.metric("Mean probability", markdown_text(info.mean_label or "—"))
    c6.metric("Flag (d_anno)", "flagged" if info.flag else "no", help="MoLAM's label differs from the previous model's")
    st.write("Source: " + SOURCE_NAMES.get(info.source or "", str(info.source))
             + (f" · iteration {info.iteration}" if info.iteration is not None else ""))
    _negative_labels(info)
    st.write("**Set the label** (one click or press its number):")
    label = _label_buttons(text_id, info.labels, info.label)
    if label is not None and _override(project, text_id, label):
        st.rerun()
    if info.overrides:
        st.caption("Overrides of this text")
        st.dataframe(pd.DataFrame(info.overrides), hide_index=True)
    _evidence(info)
