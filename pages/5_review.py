"""5 · Review: a queue of MoLAM's labels, most likely wrong first, reviewed from the keyboard (accept,
override by number, undo); or every labeled text, filterable, with one text's evidence as in the paper's
Fig. 12 and a bulk accept."""

from __future__ import annotations

import streamlit as st

from dashboard.common import require_data, require_project
from dashboard.estimate import show_labeled_set_estimate
from dashboard.review import (QUEUE_MODE, TABLE_MODE, TOAST_KEY, all_labeled_texts, pending_message,
                              review_queue)
from dashboard.shell import require_app_shell

require_app_shell()
st.title("Review")
project = require_project()
require_data(project)
if TOAST_KEY in st.session_state:
    st.toast(st.session_state.pop(TOAST_KEY))

everything = project.labeled_texts()
if everything.empty:
    st.info("Nothing labeled yet: take seed labels on the Data page, then run iterations.")
    st.stop()
show_labeled_set_estimate(project)
pending = len(project.store.responses(pending_only=True))
pending_message(pending)
molam_labeled = bool((everything["source"] != "seed").any())
if not molam_labeled:
    st.info("Nothing MoLAM-labeled yet, so nothing to review: fit MoLAM on the **MoLAM** page, then run an "
            "iteration on **Active learning**; the labels MoLAM gives the texts it queries come here, the most "
            "likely wrong first.", icon=":material/info:")
mode = st.segmented_control("Show", [QUEUE_MODE, TABLE_MODE], default=QUEUE_MODE if molam_labeled else TABLE_MODE,
                            key="review_mode", required=True, label_visibility="collapsed")
if mode == QUEUE_MODE and molam_labeled:
    review_queue(project, pending)
elif mode == TABLE_MODE:
    all_labeled_texts(project, everything)
