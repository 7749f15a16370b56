"""Every dashboard page through streamlit.testing's AppTest, error paths included.

The app runs for real on a real project store, the real dataset validator and the paper's real
LLM evidence (replayed); pages that fit MoLAM or run iterations are in test_app_loop.py.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from app_helpers import app, assert_no_exception, error_markdown, errors, finish_job, shown, upload
from mollia_core.display import markdown_text
from mollia_core.project import AnnotatorSpec, Project
from mollia_core.services import LoopService
from mollia_core.store import StoreError
from project_helpers import INJECTIONS, trec_frame, trec_records


def test_without_a_project_every_page_asks_to_open_one(projects):
    for page in ("pages/1_data.py", "pages/2_annotators.py", "pages/3_molam.py", "pages/4_active_learning.py",
                 "pages/5_review.py", "pages/6_export.py"):
        at = app(page=page)
        assert_no_exception(at)
        assert any("Open or create a project" in i.value for i in at.info), page


def test_create_a_project_in_the_sidebar(projects):
    at = app()
    at.sidebar.text_input[0].input("first project")
    at.sidebar.button[0].click().run()
    assert_no_exception(at)
    assert at.session_state["project_name"] == "first project"
    assert (projects / "first project.mollia.sqlite").is_file()
    at.sidebar.text_input[0].input("first project")
    at.sidebar.button[0].click().run()
    assert any("already exists" in e for e in errors(at))


def test_data_page_upload_columns_and_seeds(projects, trec):
    Project.create("p")
    frame = trec_frame(trec, 120)
    at = upload(app("p"), "trec.csv", frame.to_csv(index=False).encode())
    assert_no_exception(at)
    at.selectbox(key="text_column").select("question")
    at.selectbox(key="id_column").select("qid")
    at.selectbox(key="label_column").select("category").run()
    at.button[0].click().run()  # Use this data
    assert_no_exception(at)
    project = Project.open("p")
    assert project.has_dataset() and project.summary()["texts"] == 120
    assert project.summary()["validation"] == 24
    take = next(b for b in at.button if b.label.startswith("Take"))
    take.click().run()
    assert len(project.seeds()) == 50
    assert any("50" in m.value and "seed labels" in m.value for m in at.markdown)


def test_data_page_keyboard_labeling_of_seeds(projects, trec):
    project = Project.create("hand")
    project.set_dataset(trec_frame(trec, 60, with_gold=False), "question", labels=["human", "location", "numeric"])
    at = app("hand")
    first = project.seed_candidates(50)[0]
    assert at.text[0].value == project.texts[project.index_of(first)]
    at.button(key=f"seed_{first}_1").click().run()
    assert project.seeds() == {first: "location"}
    second = project.seed_candidates(50)[1]
    at.button(key=f"skip_{second}").click().run()
    third = project.seed_candidates(50)[2]
    assert at.text[0].value == project.texts[project.index_of(third)]


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"question,category\n", "no rows"),
        ("question,category\ncaf\u00e9,human\n".encode("latin-1"), "UTF-8"),
    ],
    ids=["no-rows", "not-utf8"],
)
def test_data_page_bad_csv_is_reported_in_page(projects, content, expected):
    Project.create("bad")
    at = upload(app("bad"), "bad.csv", content)
    assert_no_exception(at)
    assert any(expected in e for e in errors(at)), errors(at)


def test_data_page_label_outside_the_typed_set_names_the_row(projects, trec):
    Project.create("typed")
    frame = trec_frame(trec, 30)
    at = upload(app("typed"), "t.csv", frame.to_csv(index=False).encode())
    at.selectbox(key="text_column").select("question")
    at.selectbox(key="label_column").select("category").run()
    at.radio(key="label_set_how").set_value("Typed").run()
    at.text_input(key="typed_labels").input("human, location").run()
    at.button[0].click().run()
    assert_no_exception(at)
    assert any("row" in e and "category" in e for e in errors(at)), errors(at)
    assert not Project.open("typed").has_dataset()


def test_data_page_empty_text_cell_names_row_and_column(projects):
    Project.create("empty")
    at = upload(app("empty"), "e.csv", b"body,category\nhello,a\n,b\nworld,a\n")
    at.selectbox(key="text_column").select("body")
    at.selectbox(key="label_column").select("category").run()
    at.button[0].click().run()
    assert_no_exception(at)
    assert any("row 2" in e and "body" in e for e in errors(at)), errors(at)


def _replayed(trec, name="rev", n=200, seeds=True) -> Project:
    project = Project.create(name)
    frame = trec_frame(trec, n)
    project.set_dataset(frame, "question", id_column="qid", label_column="category")
    for model, records in list(trec_records(trec, n).items())[:3]:
        spec = AnnotatorSpec(kind="replay", model=model, path="trec.jsonl")
        project.set_panel(project.panel() + [spec])
        project.import_evidence_records(spec, records)
    if seeds:
        project.take_seeds_from_column(50)
    return project


def test_annotators_page_shows_panel_evidence_and_seed_accuracy(projects, trec):
    _replayed(trec)
    at = app("rev", "pages/2_annotators.py")
    assert_no_exception(at)
    status = at.dataframe[0].value
    assert list(status["texts with evidence"]) == [200, 200, 200]
    accuracy = at.dataframe[1].value
    assert set(accuracy["LLM"]) == {"replay:gemma", "replay:llama", "replay:mistral"}
    assert accuracy["accuracy on seeds"].between(0, 1).all()
    # The prompt preview shows the sample text as code (plain text), with the labels filled in.
    assert "Classify" in at.code[0].value


def test_annotators_page_bad_template_is_an_error(projects, trec):
    _replayed(trec, seeds=False)
    at = app("rev", "pages/2_annotators.py")
    at.text_area(key="template_text").input("Label this: {txt}").run()
    assert_no_exception(at)
    assert any("placeholder" in e for e in errors(at)), errors(at)


def test_molam_page_without_seeds_says_what_to_do(projects, trec):
    _replayed(trec, seeds=False)
    at = app("rev", "pages/3_molam.py")
    finish_job(at.button[0].click().run())  # Fit MoLAM (form submit): a job
    assert_no_exception(at)
    assert any("no seed labels" in e for e in errors(at)), errors(at)


def test_export_page_offers_three_formats(projects, trec):
    _replayed(trec)
    at = app("rev", "pages/6_export.py")
    assert_no_exception(at)
    assert len(at.get("download_button")) == 4  # CSV, JSONL, Parquet and the metadata (JSON)
    assert any("50" in m.value for m in at.markdown)


def test_data_page_opens_an_example_dataset(projects):
    Project.create("example")
    at = app("example")
    at.radio(key="data_origin").set_value("Example dataset").run()
    at.selectbox(key="example_name").select("bbc-news").run()
    at.number_input(key="example_rows").set_value(100).run()
    assert_no_exception(at)
    assert at.selectbox(key="text_column").value == "text"
    at.selectbox(key="text_column").select("title")
    at.button[0].click().run()
    assert_no_exception(at)
    project = Project.open("example")
    assert project.summary()["texts"] == 100
    assert project.labels == ("business", "entertainment", "politics", "sports", "tech")


def test_data_page_can_start_over_until_labels_exist(projects, trec):
    project = Project.create("redo")
    project.set_dataset(trec_frame(trec, 30), "question")
    at = app("redo")
    next(b for b in at.button if b.label.startswith("Use another table")).click().run()
    assert_no_exception(at)
    assert not project.has_dataset()
    project.set_dataset(trec_frame(trec, 30), "question", label_column="category")
    project.take_seeds_from_column(10)
    at = app("redo")
    assert not any(b.label.startswith("Use another table") for b in at.button)


def test_annotators_page_saves_the_panel_and_never_stores_the_api_key(projects, trec):
    from mollia_core.evidence.embedded import EMBEDDED_MODELS

    project = Project.create("panel")
    project.set_dataset(trec_frame(trec, 20), "question", label_column="category")
    at = app("panel", "pages/2_annotators.py")
    assert any("No panel saved yet" in i.value for i in at.info)
    next(t for t in at.text_input if t.label == "Base URL").input("http://127.0.0.1:8000/v1")
    next(t for t in at.text_input if t.label == "Model name").input("qwen-7b")
    at.text_input(key="api_key").input("sk-secret-never-stored-123")
    next(b for b in at.button if b.label == "Save panel").click().run()
    assert_no_exception(at)
    panel = project.panel()
    assert [s.model for s in panel if s.kind == "embedded"] == list(EMBEDDED_MODELS)
    assert [(s.base_url, s.model) for s in panel if s.kind == "server"] == [("http://127.0.0.1:8000/v1", "qwen-7b")]
    project.store.close()
    stored = b"".join(p.read_bytes() for p in projects.iterdir())
    assert b"sk-secret-never-stored-123" not in stored
    assert b"qwen-7b" in stored  # the panel itself was written


def test_error_details_are_short_in_the_browser():
    """An unexpected error shows Streamlit's generic message, no stack trace or exception text."""
    import tomllib

    from streamlit.config import ShowErrorDetailsConfigOptions

    config = tomllib.loads((Path(__file__).resolve().parent.parent / ".streamlit" / "config.toml").read_text())
    assert config["client"]["showErrorDetails"] == ShowErrorDetailsConfigOptions.NONE.value


def test_user_strings_in_an_error_stay_literal(projects):
    """A duplicate id quoted by the dataset's error reaches the page escaped (it would be an image)."""
    Project.create("dup")
    table = pd.DataFrame({"id": [INJECTIONS[0], "b", INJECTIONS[0]], "text": ["one", "two", "three"],
                          "label": ["x", "y", "x"]})
    at = upload(app("dup"), "dup.csv", table.to_csv(index=False).encode())
    at.button[0].click().run()  # Use this data
    assert_no_exception(at)
    message = [e for e in error_markdown(at) if "duplicate" in e]
    assert message and markdown_text(f"'{INJECTIONS[0]}'") in message[0], error_markdown(at)
    assert f"'{INJECTIONS[0]}'" in shown(message[0])


def test_injected_labels_and_ids_reach_the_pages_escaped(projects):
    """Labels and ids in the hand-labeling caption, buttons and the prompt preview are escaped."""
    project = Project.create("inj")
    texts = [f"text {i} {INJECTIONS[i % len(INJECTIONS)]}" for i in range(12)]
    ids = [f"{INJECTIONS[i % len(INJECTIONS)]} {i}" for i in range(12)]
    project.set_dataset(pd.DataFrame({"id": ids, "text": texts}), "text", id_column="id", labels=list(INJECTIONS))
    at = app("inj")
    assert_no_exception(at)
    first = project.seed_candidates(50)[0]
    assert f"Text id {markdown_text(first)}" in [c.value for c in at.caption]
    buttons = {b.label for b in at.button}
    assert {f"{k + 1} · {markdown_text(label)}" for k, label in enumerate(project.labels)} <= buttons
    at = app("inj", "pages/2_annotators.py")
    assert_no_exception(at)
    sample = project.seed_candidates(1)[0]
    assert any(c.value.startswith(f"Preview on text {markdown_text(sample)} ") for c in at.caption)


FULL_DISK = StoreError("The disk holding the project /tmp/p_*x*.mollia.sqlite is full: free some space and retry. "
                       "Nothing already stored was lost.")


def _raise_full_disk(*args, **kwargs):
    raise FULL_DISK


def test_review_page_says_the_disk_is_full_and_keeps_the_labels(projects, trec, monkeypatch):
    project = _replayed(trec)
    before = project.labeled_texts()
    at = app("rev", "pages/5_review.py")
    at.selectbox(key="review_text_-1").select(str(before["id"].iloc[0])).run()
    assert_no_exception(at)
    other = next(b for b in at.button if b.key and b.key.startswith("override_") and b.proto.type == "secondary")
    monkeypatch.setattr(Project, "override", _raise_full_disk)
    other.click().run()
    assert_no_exception(at)
    assert markdown_text(FULL_DISK) in error_markdown(at)
    pd.testing.assert_frame_equal(project.labeled_texts(), before)

def test_review_page_before_any_molam_label_says_what_to_do(projects, trec):
    project = _replayed(trec)
    at = app("rev", "pages/5_review.py")
    assert_no_exception(at)
    assert any("Nothing MoLAM-labeled yet" in i.value and "**Active learning**" in i.value for i in at.info)
    assert at.segmented_control(key="review_mode").value == "All labeled texts"
    assert not [b for b in at.button if b.key == "review_accept_many"]  # only seeds: nothing to accept
    info = project.text_evidence(project.labeled_texts().iloc[0]["id"])
    assert info.al_label is None and info.al_probability is None  # no AL model trained yet
    at.segmented_control(key="review_mode").set_value("Review queue").run()
    assert_no_exception(at)
    assert not at.get("progress")



def test_active_learning_page_says_the_disk_is_full(projects, trec, monkeypatch):
    _replayed(trec)
    monkeypatch.setattr(LoopService, "run_iterations", _raise_full_disk)
    at = app("rev", "pages/4_active_learning.py")
    finish_job(next(b for b in at.button if b.label == "Next iteration").click().run())
    assert_no_exception(at)
    assert markdown_text(FULL_DISK) in error_markdown(at)


def test_molam_page_with_few_seeds_explains_without_a_traceback(projects, trec):
    project = _replayed(trec, seeds=False)
    project.take_seeds_from_column(3)
    at = app("rev", "pages/3_molam.py")
    finish_job(at.button[0].click().run())  # Fit MoLAM (form submit): a job
    assert_no_exception(at)
    assert not errors(at)
    assert Project.open("rev").fit_report().n_seeds == 3  # fitted with what there is
    warnings = [shown(w.value) for w in at.warning]
    assert any("seed" in w for w in warnings), warnings  # and says what the estimate is worth
