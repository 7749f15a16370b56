"""The project's evidence file format and replay of stored evidence (project format and paper layout)."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from mollia_core.evidence import Cancelled, EvidenceError, EvidenceRecord, EvidenceSource, PanelEvidence
from mollia_core.evidence.parsing import vote_shares
from mollia_core.evidence.replay import (
    EVIDENCE_FORMAT,
    ReplaySource,
    read_evidence_jsonl,
    records_from_panel,
    replay_panel,
    text_sha256,
    write_evidence_jsonl,
)
from mollia_core.paths import paper_evidence_dir

LABELS = ("negative", "positive")


def _record(text_id: str, model: str = "m1", z=(0.3, 0.7), c=(0.2, 0.7), answers=("positive",) * 7) -> EvidenceRecord:
    return EvidenceRecord(
        text_id=text_id,
        model=model,
        labels=LABELS,
        label_probs=np.array(z),
        vote_shares=np.array(c),
        no_label_share=1 - sum(c),
        answers=tuple(answers),
        meta={"template": "paper", "t": 10},
    )


def _assert_same(a: EvidenceRecord, b: EvidenceRecord) -> None:
    assert (a.text_id, a.model, a.labels, a.answers) == (b.text_id, b.model, b.labels, b.answers)
    np.testing.assert_array_equal(a.label_probs, b.label_probs)
    np.testing.assert_array_equal(a.vote_shares, b.vote_shares)
    assert a.no_label_share == b.no_label_share


def test_round_trip_is_exact(tmp_path):
    records = [
        _record("a", z=(1 / 3, 2 / 3), c=(0.1, 0.8), answers=("Positive.", "positive", "ñ «quoted»", "", "x\ny")),
        _record("b", z=(1e-300, 1.0), c=(0.0, 0.0), answers=()),
        _record("a", model="m2"),
    ]
    path = write_evidence_jsonl(tmp_path / "out" / "e.evidence.jsonl", records)
    first = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    assert first == EVIDENCE_FORMAT
    back = read_evidence_jsonl(path)
    assert len(back) == 3
    for original, read in zip(records, back):
        _assert_same(original, read)
        assert read.meta == original.meta
    assert not (tmp_path / "out" / "e.evidence.jsonl.tmp").exists()


def test_numpy_values_in_meta_are_stored_as_plain_json(tmp_path):
    record = EvidenceRecord("a", "m1", LABELS, np.array([0.5, 0.5]), np.array([0.5, 0.5]),
                            meta={"seconds": np.float32(0.25), "top": np.array([1, 2]), "n": np.int64(3)})
    back = read_evidence_jsonl(write_evidence_jsonl(tmp_path / "e.jsonl", [record]))[0]
    assert back.meta == {"seconds": 0.25, "top": [1, 2], "n": 3}
    with pytest.raises(TypeError, match="cannot be stored as JSON"):
        write_evidence_jsonl(tmp_path / "f.jsonl", [EvidenceRecord("a", "m", LABELS, np.ones(2), np.ones(2),
                                                                   meta={"x": object()})])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.jsonl"]  # no half-written file left


def test_concatenated_files_and_missing_no_label_share_read(tmp_path):
    path = tmp_path / "e.jsonl"
    write_evidence_jsonl(path, [_record("a")])
    line = json.dumps({"text_id": "b", "model": "m1", "labels": list(LABELS), "label_probs": [0.5, 0.5],
                       "vote_shares": [0.25, 0.5]})
    path.write_text(path.read_text() + path.read_text() + line + "\n")  # header repeated mid-file
    back = read_evidence_jsonl(path)
    assert [r.text_id for r in back] == ["a", "a", "b"]
    assert back[2].no_label_share == pytest.approx(0.25)
    assert back[2].answers == ()


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"text_id": "a"}\n', "not a MoLLIA evidence file"),
        (json.dumps(EVIDENCE_FORMAT) + '\n{"text_id": "a", "mod\n', "line 2: not valid JSON"),
        (json.dumps(EVIDENCE_FORMAT) + '\n{"text_id": "a", "model": "m"}\n', r"line 2: the record lacks \['labels'"),
        (
            json.dumps(EVIDENCE_FORMAT)
            + '\n{"text_id": "a", "model": "m", "labels": ["x", "y"], "label_probs": [1], "vote_shares": [0, 1]}\n',
            "line 2: label_probs must be a list of 2 numbers",
        ),
        (
            json.dumps(EVIDENCE_FORMAT)
            + '\n{"text_id": "a", "model": "m", "labels": ["x"], "label_probs": ["hi"], "vote_shares": [0]}\n',
            "label_probs must hold numbers",
        ),
        ('{"format": "mollia-evidence", "version": 99}\n', "version 99"),
        (json.dumps(EVIDENCE_FORMAT) + "\n[1, 2]\n", "must be a JSON object"),
    ],
)
def test_bad_files_name_the_line(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(EvidenceError, match=message):
        read_evidence_jsonl(path)


def test_missing_file(tmp_path):
    with pytest.raises(EvidenceError, match="not found"):
        read_evidence_jsonl(tmp_path / "none.jsonl")


def test_replay_from_project_file_by_id_and_by_text(tmp_path):
    texts = {"a": "great film", "b": "dull film"}
    path = write_evidence_jsonl(
        tmp_path / "e.jsonl", [_record("a"), _record("b", z=(0.9, 0.1)), _record("a", model="m2")], texts=texts
    )
    with pytest.raises(EvidenceError, match="several models|holds the models"):
        ReplaySource.from_jsonl(path)
    source = ReplaySource.from_jsonl(path, model="m1")
    assert isinstance(source, EvidenceSource)
    assert source.name == "m1" and len(source) == 2
    by_text = source.evidence(["dull film", "great film"], LABELS)
    assert [r.text_id for r in by_text] == ["b", "a"]
    np.testing.assert_array_equal(by_text[0].label_probs, [0.9, 0.1])
    # the caller's ids are kept on the returned records; the text decides which record
    renamed = source.evidence(["dull film"], LABELS, text_ids=["row-7"])
    assert renamed[0].text_id == "row-7"
    np.testing.assert_array_equal(renamed[0].label_probs, [0.9, 0.1])
    # an id stored for another text does not match
    with pytest.raises(EvidenceError, match="stored, but for a different text"):
        source.evidence(["an unseen review"], LABELS, text_ids=["a"])
    with pytest.raises(EvidenceError, match="holds no evidence of model 'm3'"):
        ReplaySource.from_jsonl(path, model="m3")


def test_replay_without_stored_texts_matches_by_id():
    source = ReplaySource([_record("a"), _record("b", z=(0.9, 0.1))])
    out = source.evidence(["whatever text", "other"], LABELS, text_ids=["b", "a"])
    np.testing.assert_array_equal(out[0].label_probs, [0.9, 0.1])
    with pytest.raises(EvidenceError, match=r"no stored evidence of model 'm1' for text id 'c'.*covers 2 texts"):
        source.evidence(["x"], LABELS, text_ids=["c"])
    with pytest.raises(EvidenceError, match="for text 'x'"):
        source.evidence(["x"], LABELS)


def test_replay_reorders_labels_and_rejects_another_label_set():
    source = ReplaySource([_record("a", z=(0.3, 0.7), c=(0.2, 0.7))])
    flipped = source.evidence(["t"], ("positive", "negative"), text_ids=["a"])[0]
    np.testing.assert_array_equal(flipped.label_probs, [0.7, 0.3])
    np.testing.assert_array_equal(flipped.vote_shares, [0.7, 0.2])
    with pytest.raises(EvidenceError, match="over the labels"):
        source.evidence(["t"], ("neg", "pos"), text_ids=["a"])


def test_replay_reports_progress_and_honours_cancel():
    source = ReplaySource([_record("a")])
    seen = []
    source.evidence(["t"], LABELS, text_ids=["a"], progress=seen.append)
    assert seen[-1].done == 1 and seen[-1].total == 1
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        source.evidence(["t"], LABELS, text_ids=["a"], cancel=cancel)


def test_cache_key_depends_on_the_evidence():
    a = ReplaySource([_record("a")])
    assert a.cache_key == ReplaySource([_record("a")]).cache_key
    assert a.cache_key != ReplaySource([_record("a", z=(0.4, 0.6))]).cache_key
    assert a.cache_key != ReplaySource([_record("a", model="m2")]).cache_key


def test_empty_replay_is_refused():
    with pytest.raises(EvidenceError, match="no stored evidence"):
        ReplaySource([])


def test_trec_paper_replay_reproduces_z_c_and_answers(trec):
    panel = replay_panel(trec)
    assert [s.name for s in panel] == list(trec.evidence.models)
    rng = np.random.default_rng(0)
    index = rng.choice(len(trec.evidence), size=200, replace=False)
    texts = [trec.texts[i] for i in index]
    ids = [trec.evidence.text_ids[i] for i in index]
    per_model = [source.evidence(texts, trec.labels, text_ids=ids) for source in panel]
    # by text only (no ids): same evidence, except where TREC holds the same question twice
    by_text = panel[4].evidence(texts, trec.labels)
    for j, records in enumerate(per_model):
        for i, record in zip(index, records):
            np.testing.assert_array_equal(record.label_probs, trec.evidence.label_probs[i, j])
            np.testing.assert_array_equal(record.vote_shares, trec.evidence.vote_shares[i, j])
            assert record.answers == trec.evidence.answers[i][j]
    unique = [k for k, i in enumerate(index) if trec.texts.count(trec.texts[i]) == 1]
    assert len(unique) > 150
    for k in unique:
        np.testing.assert_array_equal(by_text[k].label_probs, per_model[4][k].label_probs)
    # stacked back into a panel, the paper's meta_x is reproduced
    stacked = PanelEvidence.from_records([[per_model[j][k] for j in range(5)] for k in range(len(index))])
    meta_x = np.load(paper_evidence_dir("trec") / "meta_x.npy")[index]
    np.testing.assert_array_equal(stacked.meta_x(), meta_x)


def test_trec_reparsed_replay_uses_the_robust_parser(trec):
    source = replay_panel(trec, reparse_answers=True)[2]  # mistral: many messy answers
    records = source.records()
    i = next(i for i, r in enumerate(records) if any(a.startswith('"') for a in r.answers))
    expected, none = vote_shares(records[i].answers, trec.labels)
    np.testing.assert_array_equal(records[i].vote_shares, expected)
    assert records[i].vote_shares.sum() > trec.evidence.vote_shares[i, 2].sum()
    assert records[i].no_label_share == none


@pytest.mark.needs_shared
def test_from_paper_and_unknown_model():
    source = ReplaySource.from_paper(paper_evidence_dir("imdb"), "yi")
    assert source.name == "yi" and len(source) == 10000
    record = source.evidence(["no text stored for imdb"], ("negative", "positive"), text_ids=["5"])[0]
    meta_x = np.load(paper_evidence_dir("imdb") / "meta_x.npy")
    np.testing.assert_array_equal(record.label_probs, meta_x[5, 8])
    with pytest.raises(EvidenceError, match="holds no evidence of model 'gpt'"):
        ReplaySource.from_paper(paper_evidence_dir("imdb"), "gpt")


def test_panel_written_in_project_format_replays_identically(tmp_path, trec):
    small = trec.evidence.subset(np.arange(20))
    per_model = records_from_panel(small)
    texts = {small.text_ids[i]: trec.texts[i] for i in range(20)}
    path = write_evidence_jsonl(tmp_path / "trec.evidence.jsonl", [r for rs in per_model for r in rs], texts=texts)
    for j, model in enumerate(small.models):
        source = ReplaySource.from_jsonl(path, model=model)
        out = source.evidence(list(trec.texts[:20]), trec.labels)
        unique = [i for i in range(20) if trec.texts.count(trec.texts[i]) == 1]
        assert len(unique) >= 18
        for i in unique:
            _assert_same(out[i], per_model[j][i])
    stored = read_evidence_jsonl(path)[0]
    assert stored.meta["text_sha256"] == text_sha256(trec.texts[0])
    assert "text" not in stored.meta


def test_texts_can_be_included(tmp_path):
    path = write_evidence_jsonl(tmp_path / "e.jsonl", [_record("a")], texts={"a": "great film"}, include_texts=True)
    stored = read_evidence_jsonl(path)[0]
    assert stored.meta["text"] == "great film"
    assert stored.meta["text_sha256"] == text_sha256("great film")
    replayed = ReplaySource.from_jsonl(path).evidence(["great film"], LABELS)[0]
    assert replayed.text_id == "a" and "text" not in replayed.meta


def test_paper_layout_written_reads_back_with_its_own_names(tmp_path):
    from mollia_core.evidence import load_paper_evidence, write_paper_evidence

    labels, models = ("business", "sport", "tech"), ("smollm2-135m", "qwen2.5-coder-0.5b")
    rng = np.random.default_rng(0)
    z = rng.dirichlet(np.ones(3), size=(4, 2))
    c = rng.dirichlet(np.ones(3), size=(4, 2)) * 0.9
    answers = [[("sport", "Sport"), ("tech",)] for _ in range(4)]
    evidence = PanelEvidence(labels, models, z, c, answers=answers)
    texts = ["Chelsea win", "Chip sales up", "Shares fall", "New phone"]
    gold = np.array([1, 2, 0, 2])

    back = load_paper_evidence(write_paper_evidence(tmp_path / "bbc", evidence, gold, texts))

    assert (back.labels, back.evidence.models, back.texts) == (labels, models, tuple(texts))
    np.testing.assert_array_equal(back.gold, gold)
    np.testing.assert_allclose(back.evidence.label_probs, z)
    np.testing.assert_allclose(back.evidence.vote_shares, c)
    assert back.evidence.answers[0] == [("sport", "Sport"), ("tech",)]
    # names that do not fit the arrays are refused, not silently misread
    (tmp_path / "bbc" / "names.json").write_text(json.dumps({"labels": ["a", "b"], "models": list(models)}))
    with pytest.raises(ValueError, match="names 2 models and 2 labels"):
        load_paper_evidence(tmp_path / "bbc")
