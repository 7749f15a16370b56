"""The dashboard's application layer (mollia_core.project) on real components: the SQLite store,
the dataset validator, the paper's real LLM evidence, MoLAM (XGBoost) and the AL loop."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mollia_core.dataset import DatasetError
from mollia_core.export import import_labeled, write_labeled
from mollia_core.project import AnnotatorSpec, Project, ProjectError, list_projects
from project_helpers import trec_frame, trec_records


def _with_evidence(trec, n=300) -> Project:
    project = Project.create("trec small")
    frame = trec_frame(trec, n)
    project.set_dataset(frame, "question", id_column="qid", label_column="category", source_name="trec.csv")
    for model, records in trec_records(trec, n).items():
        spec = AnnotatorSpec(kind="replay", model=model, path="trec.jsonl")
        project.set_panel(project.panel() + [spec])
        project.import_evidence_records(spec, records)
    return project


def test_create_open_list_and_switch(projects):
    a = Project.create("alpha")
    Project.create("beta")
    assert set(list_projects()) == {"alpha", "beta"}
    assert (projects / "alpha.mollia.sqlite").is_file()
    assert Project.open("alpha").path == a.path
    with pytest.raises(ProjectError, match="already exists"):
        Project.create("alpha")
    with pytest.raises(ProjectError, match="no project named"):
        Project.open("gamma")
    with pytest.raises(ProjectError, match="not a usable project name"):
        Project.create("../evil")


def test_dataset_seeds_and_validation_split_survive_reopening(projects, trec):
    project = Project.create("data")
    frame = trec_frame(trec, 300)
    project.set_dataset(frame, "question", id_column="qid", label_column="category")
    assert project.labels == tuple(sorted(set(frame["category"])))
    splits = project.splits()
    # 20% of the 300 gold-labeled rows are held out for the learning curve.
    assert (splits == "validation").sum() == 60
    assert project.take_seeds_from_column(50) == 50
    seeds = project.seeds()
    assert all(splits[project.index_of(t)] == "pool" for t in seeds)
    gold = dict(zip(frame["qid"], frame["category"]))
    assert all(gold[t] == label for t, label in seeds.items())
    reopened = Project.open("data")
    assert reopened.seeds() == seeds
    pd.testing.assert_frame_equal(reopened.original_frame(), frame)


def test_hand_labeled_seeds_and_label_outside_the_set(projects, trec):
    project = Project.create("hand")
    project.set_dataset(trec_frame(trec, 40, with_gold=False), "question", labels=["human", "location", "numeric"])
    candidates = project.seed_candidates(10)
    assert len(candidates) == 10 and len(set(candidates)) == 10
    project.label_seed(candidates[0], "human")
    project.label_seed(candidates[1], "numeric")
    project.remove_seed(candidates[1])
    assert project.seeds() == {candidates[0]: "human"}
    with pytest.raises(ProjectError, match="not in the label set"):
        project.label_seed(candidates[2], "sport")
    with pytest.raises(ProjectError, match="no label column"):
        project.take_seeds_from_column()


def test_bad_input_is_a_dataset_error(projects, trec):
    project = Project.create("bad")
    frame = trec_frame(trec, 20)
    with pytest.raises(DatasetError) as missing:
        project.set_dataset(frame, "body")
    assert missing.value.column == "body"
    frame.loc[7, "category"] = "sport"
    with pytest.raises(DatasetError) as outside:
        project.set_dataset(frame, "question", label_column="category", labels=["human", "location"])
    assert outside.value.row is not None
    assert not project.has_dataset()


def test_evidence_import_and_seed_accuracy(projects, trec):
    project = _with_evidence(trec)
    evidence = project.require_evidence()
    assert evidence.label_probs.shape == (300, 5, 6)
    order = [trec.labels.index(label) for label in project.labels]
    np.testing.assert_allclose(evidence.label_probs, trec.evidence.label_probs[:300][:, :, order])
    assert project.text_evidence("3").answers[0] == tuple(trec.evidence.answers[3][0])
    with pytest.raises(ProjectError, match="no seed labels"):
        project.llm_seed_accuracy()
    project.take_seeds_from_column(50)
    accuracy = project.llm_seed_accuracy()
    y = project.seed_vector()
    seeded = y >= 0
    expected = (evidence.label_probs[seeded].argmax(-1)[:, 0] == y[seeded]).mean()
    assert accuracy["replay:gemma"] == pytest.approx(expected)


@pytest.mark.slow
def test_fit_iterate_override_export_and_resume(projects, trec, tmp_path):
    from mollia_core.loop import LoopConfig
    from mollia_core.project import AnnotatorSettings

    project = _with_evidence(trec)
    with pytest.raises(ProjectError, match="no seed labels"):
        project.fit_annotator()
    project.take_seeds_from_column(50)
    report = project.fit_annotator(AnnotatorSettings(random_state=1))
    assert report.n_seeds == 50
    assert set(report.cv_accuracy) >= {"MoLAM", "majority vote", "mean probability", "replay:qwen"}
    annotation = project.annotation_frame()
    assert len(annotation) == 300 and annotation["probability"].between(0, 1).all()
    assert report.n_with_negatives == sum(bool(n) for n in annotation["negatives"])

    settings = LoopConfig(batch_size=10, random_state=1)
    project.run_iterations(1, settings)
    curve = project.learning_curve()
    assert list(curve["iteration"]) == [0, 1]
    assert curve["validation_accuracy"].between(0, 1).all()  # 60 gold rows held out
    labeled = project.labeled_texts()
    assert (labeled["source"] == "seed").sum() == 50 and (labeled["source"] == "molam").sum() == 10
    first = labeled[labeled["source"] == "molam"].iloc[0]
    assert project.labeled_texts(iterations=[1], sources=["molam"])["id"].tolist() == \
        labeled[labeled["source"] == "molam"]["id"].tolist()
    new_label = next(label for label in project.labels if label != first["label"])
    project.override(first["id"], new_label)

    # A new process (another Project object on the same file) resumes where the first one stopped.
    reopened = Project.open("trec small")
    assert reopened.text_evidence(first["id"]).source == "override"
    reopened.run_iterations(1, settings)
    assert list(reopened.learning_curve()["iteration"]) == [0, 1, 2]
    override = reopened.text_evidence(first["id"]).overrides[0]
    assert override["to"] == new_label and override["used_from_iteration"] == 2

    frame = reopened.export_frame()
    assert frame["source"].value_counts().to_dict() == {"seed": 50, "molam": 19, "override": 1}
    assert frame.set_index("id").loc[first["id"], "label"] == new_label
    assert list(frame.columns) == ["id", "text", "label", "source", "molam_probability", "negative_labels", "flag",
                                   "iteration", "category", "note"]
    for fmt in ("csv", "jsonl", "parquet"):
        path = tmp_path / f"out.{fmt}"
        write_labeled(frame, path)
        pd.testing.assert_frame_equal(import_labeled(path), frame, check_exact=True)
