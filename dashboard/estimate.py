"""The labeled set's estimated accuracy (no gold), as the Review and Export pages show it."""

from __future__ import annotations

import pandas as pd
import streamlit as st



def show_labeled_set_estimate(project, scope: str = "labeled") -> dict | None:
    """A small block: the estimated accuracy of the labeled set (``scope`` "labeled") or of every
    text (``"all"``), named as an estimate from N human labels, with its interval, and per source and
    per label in an expander. Returns the estimate as a dict (None when there is none)."""
    estimate = project.annotation.labeled_set_estimate(scope)
    what = "the labeled set" if scope == "labeled" else "every text's label"
    if estimate is None:
        st.caption(f"No estimate of {what}'s accuracy yet: fit MoLAM with at least 5 seed labels on the MoLAM page.")
        return None
    overall = estimate.overall
    st.markdown(
        f"**Estimated accuracy of {what}: {overall.accuracy:.1%}** (95 % interval {overall.low:.1%}–{overall.high:.1%}, "
        f"{overall.n} texts) — an estimate from {estimate.n_human_labels} human seed labels, not a measurement."
    )
    with st.expander("Per source and per label"):
        st.caption("Human labels (seed, accept, override) are counted as right. MoLAM's labels are estimated from "
                   "its probabilities, recalibrated on the seed labels' out-of-fold probabilities; the interval "
                   "is a bootstrap over those seeds.")
        rows = [{"group": f"source: {name}", "texts": e.n, "estimated accuracy": e.accuracy,
                 "95 % low": e.low, "95 % high": e.high} for name, e in estimate.per_source.items()]
        rows += [{"group": f"label: {name}", "texts": e.n, "estimated accuracy": e.accuracy,
                  "95 % low": e.low, "95 % high": e.high} for name, e in estimate.per_label.items()]
        st.dataframe(pd.DataFrame(rows), hide_index=True, column_config={
            name: st.column_config.NumberColumn(format="%.3f") for name in ("estimated accuracy", "95 % low", "95 % high")})
    return estimate.to_dict()
