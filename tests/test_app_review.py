"""The Review page's queue and bulk accept through AppTest, on a project with the paper's real TREC
evidence, the real MoLAM (XGBoost) and one real active-learning iteration (offline encoder, fast mode)."""

from __future__ import annotations

import shutil

import pytest

from app_helpers import app, assert_no_exception, errors, shown
from mollia_core.project import Project
from project_helpers import ITERATED_BATCH as BATCH, copy_project as _copy, iterated  # noqa: F401 (built once)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def queued(iterated, tmp_path_factory):
    """The iterated project once its queue is ranked: MoLAM's out-of-fold labels on the seeds, which the
    ranking learns from, are computed once and stored in the file."""
    path = tmp_path_factory.mktemp("queued") / iterated.name
    shutil.copy(iterated, path)
    project = Project(path)
    project.queue.ranked()
    project.store.close()
    return path


def _place(at) -> str:
    """The queue's place as the page writes it above the text: "Text 1 of 10 · id ..."."""
    return shown(at.get("progress")[0].proto.text)


def _responses(project: Project) -> list[tuple[str, str, str]]:
    return [(project.text_ids[r.text_index], r.kind, project.labels[r.label]) for r in project.store.responses()]


def test_the_queue_is_reviewed_one_text_at_a_time(queued, projects):
    project = _copy(queued, projects)
    queue = project.queue.ranked(project.queue.budget())
    ids = queue["id"].astype(str).tolist()
    assert len(ids) >= 4
    at = app("loop", "pages/5_review.py")
    assert_no_exception(at)
    assert _place(at).startswith(f"Text 1 of {len(ids)} · id {ids[0]}")
    assert at.text[0].value == project.texts[project.index_of(ids[0])]
    metrics = {m.label: shown(m.value) for m in at.metric}
    assert metrics["MoLAM's label"] == queue.iloc[0]["label"]
    assert metrics["AL model's prediction"] == queue.iloc[0]["al_label"]
    assert metrics["Estimated chance the label is wrong"] == f"{queue.iloc[0]['wrong_chance']:.0%}"
    assert any(shown(m.value) == f"**Why it is in the queue:** {queue.iloc[0]['reasons']}" for m in at.markdown)
    assert any("Keys:" in c.value for c in at.caption)

    # Next and previous, by either key's button.
    at.button(key="review_next_j").click().run()
    assert _place(at).startswith(f"Text 2 of {len(ids)} · id {ids[1]}")
    at.button(key="review_previous").click().run()
    assert _place(at).startswith(f"Text 1 of {len(ids)} · id {ids[0]}")

    # Accept: MoLAM's label becomes a human label, stored; the next text takes the first place.
    at.button(key="review_accept").click().run()
    assert_no_exception(at)
    assert _responses(project) == [(ids[0], "accept", queue.iloc[0]["label"])]
    # The queue is ranked again (the ranking learns from the review): the text now first is shown.
    queue = project.queue.ranked(len(ids) - 1)
    assert ids[0] not in set(queue["id"])
    assert _place(at).startswith(f"Text 1 of {len(ids) - 1} · id {queue.iloc[0]['id']}")
    assert any("1 review not yet used by a training" in i.value for i in at.info)

    # Override by a label's button (its number key): stored, and on to the next text.
    shown_id, molam_label = str(queue.iloc[0]["id"]), queue.iloc[0]["label"]
    new_label = next(label for label in project.labels if label != molam_label)
    at.button(key=f"override_{shown_id}_{project.labels.index(new_label)}").click().run()
    assert_no_exception(at)
    assert _responses(project)[1:] == [(shown_id, "override", new_label)]
    assert f"· id {shown_id} " not in _place(at) and f" of {len(ids) - 2} " in _place(at)

    # Undo: the override is withdrawn and the page is back on its text, MoLAM's label restored.
    at.button(key="review_undo_ctrl_z").click().run()
    assert_no_exception(at)
    assert [kind for _, kind, _ in _responses(project)] == ["accept"]
    assert f"· id {shown_id} " in _place(at)
    assert project.text_evidence(shown_id).source == "molam" and project.text_evidence(shown_id).label == molam_label


def test_the_review_budget_is_a_setting(queued, projects):
    project = _copy(queued, projects)
    at = app("loop", "pages/5_review.py")
    at.number_input[0].set_value(3).run()
    assert_no_exception(at)
    assert project.queue.budget() == 3
    assert " of 3 · " in _place(at)


def test_all_labeled_texts_accepts_the_shown_molam_labels_at_once(queued, projects):
    project = _copy(queued, projects)
    at = app("loop", "pages/5_review.py")
    at.segmented_control(key="review_mode").set_value("All labeled texts").run()
    at.multiselect(key="f_source").select("molam").run()
    assert len(at.dataframe[0].value) == BATCH
    at.button(key="review_accept_many").click().run()
    assert_no_exception(at)
    assert not errors(at)
    assert [kind for _, kind, _ in _responses(project)] == ["accept"] * BATCH
    assert (project.labeled_texts()["source"] != "molam").all()
    assert [t.value for t in at.toast] == [f"Accepted {BATCH} MoLAM labels as human labels."]
    assert any(f"{BATCH} reviews not yet used by a training" in i.value for i in at.info)


def test_a_texts_detail_shows_the_al_models_prediction(queued, projects):
    project = _copy(queued, projects)
    text_id = str(project.labeled_texts(sources=["molam"]).iloc[0]["id"])
    info = project.text_evidence(text_id)
    predictions = project.store.latest_predictions()
    index = project.index_of(text_id)
    assert info.al_label == project.labels[int(predictions.proba[index].argmax())]
    assert info.al_probability == pytest.approx(predictions.proba[index].max())
    at = app("loop", "pages/5_review.py")
    at.segmented_control(key="review_mode").set_value("All labeled texts").run()
    at.selectbox(key="review_text_-1").select(text_id).run()
    assert_no_exception(at)
    tile = next(m for m in at.metric if m.label == "AL model")
    assert shown(tile.value) == info.al_label
