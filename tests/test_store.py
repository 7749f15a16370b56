"""The project store: round-trips, atomicity, overrides, errors."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from mollia_core.store import (
    SCHEMA_VERSION,
    AnnotationRow,
    IterationRecord,
    ProjectStore,
    StoreError,
    TrainingSet,
    list_projects,
)

LABELS = ("neg", "pos", "neutral")


@pytest.fixture
def store(tmp_path):
    s = ProjectStore(tmp_path / "p.mollia.sqlite")
    s.set_labels(LABELS)
    s.add_texts(
        ["good", "bad", "meh", "great"],
        text_ids=["a", "b", "c", "d"],
        gold=[1, 0, None, 1],
        splits=["pool", "pool", "pool", "test"],
        columns=[{"stars": 5}, {"stars": 1}, {"stars": 3}, {"stars": 5}],
    )
    yield s
    s.close()


def test_dataset_and_settings_round_trip(store, tmp_path):
    store.update_settings({"name": "demo", "loop": {"batch_size": 7}})
    with ProjectStore.open(tmp_path / "p.mollia.sqlite") as other:  # a second connection sees the commits
        assert other.labels == LABELS
        assert other.texts() == ["good", "bad", "meh", "great"]
        assert other.text_ids() == ["a", "b", "c", "d"]
        assert other.gold().tolist() == [1, 0, -1, 1]
        assert other.splits().tolist() == ["pool", "pool", "pool", "test"]
        assert other.original_columns()[3] == {"stars": 5}
        assert other.get_setting("loop") == {"batch_size": 7}
        assert other.get_setting("missing", 3) == 3
        assert other.settings()["name"] == "demo"


def test_evidence_round_trip_is_exact(tmp_path, trec):
    panel = trec.evidence.subset(np.arange(40))
    with ProjectStore(tmp_path / "e.mollia.sqlite") as s:
        s.set_labels(trec.labels)
        s.add_texts(list(trec.texts[:40]))
        s.put_evidence(panel.select_models(["gemma", "llama"]), model_info={"gemma": {"kind": "replay"}})
        s.put_evidence(panel.select_models(["mistral", "qwen", "yi"]))
        assert s.evidence_coverage() == {m: 40 for m in panel.models}
        back = s.evidence()
    assert back.models == panel.models
    np.testing.assert_array_equal(back.label_probs, panel.label_probs)
    np.testing.assert_array_equal(back.vote_shares, panel.vote_shares)
    np.testing.assert_array_equal(back.no_label_share, panel.no_label_share)
    assert back.answers == panel.answers
    assert back.text_ids == tuple(str(i) for i in range(40))


def test_evidence_over_other_labels_is_refused(store, trec):
    with pytest.raises(StoreError, match="evidence is over labels"):
        store.put_evidence(trec.evidence.subset([0, 1]), text_indices=[0, 1])


def test_partial_evidence_raises(tmp_path, trec):
    with ProjectStore(tmp_path / "e.mollia.sqlite") as s:
        s.set_labels(trec.labels)
        s.add_texts(list(trec.texts[:5]))
        s.put_evidence(trec.evidence.subset([0, 1]).select_models(["yi"]), text_indices=[0, 1])
        with pytest.raises(StoreError, match="incomplete for yi \\(2/5"):
            s.evidence()


def test_annotations_round_trip(store):
    store.set_seed_labels({0: 1, 1: 0})
    row = AnnotationRow(
        text_index=2, label=2, source="molam", iteration=1, probability=0.8, annotator_label=2,
        negatives=(0,), proba=(0.1, 0.1, 0.8), d_anno=True, weight=0.5,
    )
    store.put_annotations([row])
    back = store.annotation(2)
    assert (back.label, back.source, back.iteration, back.probability) == (2, "molam", 1, 0.8)
    assert back.negatives == (0,) and back.proba == (0.1, 0.1, 0.8) and back.d_anno is True and back.weight == 0.5
    assert not back.is_human
    assert store.seed_labels() == {0: 1, 1: 0}
    assert store.annotation(0).is_human and store.annotation(0).weight == 1.0
    assert store.labeled_indices().tolist() == [0, 1, 2]
    assert store.n_labeled == 3


def test_override_is_logged_and_becomes_a_human_label(store):
    store.put_annotations([AnnotationRow(2, 2, "molam", 1, 0.8, 2, (0,), None, True, 0.5)])
    record = store.add_override(2, 1)
    assert (record.text_index, record.kind, record.previous_label, record.label, record.applied_iteration) == (
        2, "override", 2, 1, None)
    row = store.annotation(2)
    assert (row.label, row.source, row.weight, row.negatives) == (1, "override", 1.0, ())
    assert row.annotator_label == 2 and row.d_anno is True  # what MoLAM said stays for review
    # An unlabeled text joins L through an override.
    store.add_override(3, 0)
    assert store.annotation(3).source == "override" and store.annotation(3).label == 0
    assert [o.text_index for o in store.overrides(pending_only=True)] == [2, 3]
    assert store.mark_overrides_applied(4) == 2
    assert store.overrides(pending_only=True) == []
    assert [o.applied_iteration for o in store.overrides()] == [4, 4]
    assert store.overrides()[0].created_at <= store.overrides()[1].created_at


def test_iterations_merge_updates(store):
    store.put_iteration(IterationRecord(1, "queried", queried=(0, 2), lam=0.4, timings={"query_s": 0.1}))
    store.update_iteration(1, status="labeled", metrics={"n_flagged": 1}, timings={"label_s": 0.2})
    record = store.update_iteration(1, status="trained", metrics={"test_accuracy": 0.5})
    assert record.status == "trained" and record.queried == (0, 2) and record.lam == 0.4
    assert record.metrics == {"n_flagged": 1, "test_accuracy": 0.5}
    assert record.timings == {"query_s": 0.1, "label_s": 0.2}
    assert store.last_iteration().iteration == 1
    with pytest.raises(StoreError, match="status"):
        store.put_iteration(IterationRecord(2, "halfway"))
    with pytest.raises(StoreError, match="does not exist"):
        store.update_iteration(9, status="trained")


def test_transaction_is_atomic(store):
    with pytest.raises(RuntimeError):
        with store.transaction():
            store.set_seed_labels({0: 1})
            store.put_iteration(IterationRecord(0, "trained"))
            raise RuntimeError("killed halfway")
    assert store.seed_labels() == {} and store.iterations() == []


def test_arrays_and_blobs_never_pickle(store):
    store.put_array("scores/0", np.array([0, 2, 1]))
    np.testing.assert_array_equal(store.get_array("scores/0"), [0, 2, 1])
    store.put_blob("model/molam", b"\x00xgb", {"format": "ubj"})
    assert store.get_blob("model/molam") == (b"\x00xgb", {"format": "ubj"})
    with pytest.raises(ValueError):
        store.put_array("objects", np.array([{"a": 1}], dtype=object))
    store.delete("scores/0")
    assert store.get_array("scores/0") is None


def _training_set() -> TrainingSet:
    negatives = np.zeros((3, len(LABELS)), dtype=bool)
    negatives[2, 0] = True
    return TrainingSet(np.array([0, 1, 2]), np.array([1, 0, 2]), np.array([1.0, 1.0, 0.5]), negatives)


def _assert_same_training_set(actual: TrainingSet | None, expected: TrainingSet) -> None:
    assert actual is not None
    for part in ("index", "y", "weight", "negatives"):
        np.testing.assert_array_equal(getattr(actual, part), getattr(expected, part))


def test_loop_state_round_trips_through_typed_methods(store, tmp_path):
    expected = _training_set()
    store.put_training_set(1, expected)
    store.put_annotator_fit_labels(np.array([1, 0, -1, -1]))
    proba_0 = np.eye(3)[[2, 0, 1, 1]].astype(np.float32)
    store.put_predictions(0, proba_0)
    store.put_predictions(1, np.eye(3)[[0, 0, 1, 2]].astype(np.float32))
    store.close()
    with ProjectStore.open(tmp_path / "p.mollia.sqlite") as reopened:
        _assert_same_training_set(reopened.training_set(1), expected)
        assert reopened.training_set(0) is None and len(reopened.training_set(1)) == 3
        assert reopened.annotator_fit_labels().tolist() == [1, 0, -1, -1]
        first, latest = reopened.predictions(0), reopened.latest_predictions()
        assert first.labels.tolist() == [2, 0, 1, 1] and first.proba is None  # only the latest keeps probabilities
        assert (latest.iteration, latest.labels.tolist()) == (1, [0, 0, 1, 2]) and latest.proba.shape == (4, 3)
        assert reopened.predictions(2) is None
    kept = expected.rows(np.array([True, False, True]))
    assert kept.index.tolist() == [0, 2] and kept.negatives.tolist() == [[False] * 3, [True, False, False]]


def test_loop_state_of_a_project_file_written_before_the_typed_methods_is_read(tmp_path):
    """Older MoLLIA wrote the loop's arrays by name; the typed methods read the same arrays."""
    expected = _training_set()
    with ProjectStore(tmp_path / "old.mollia.sqlite") as old:
        for part in ("index", "y", "weight", "negatives"):
            old.put_array(f"loop/train/2/{part}", getattr(expected, part))
        old.put_array("loop/annotator_fit_y", np.array([0, -1]))
        old.put_array("loop/prediction/1", np.array([1, 1]))
        old.put_array("loop/prediction/2", np.array([0, 1]))
        old.put_array("loop/proba/2", np.array([[0.9, 0.1], [0.2, 0.8]], dtype=np.float32))
    with ProjectStore.open(tmp_path / "old.mollia.sqlite") as store:
        _assert_same_training_set(store.training_set(2), expected)
        assert store.annotator_fit_labels().tolist() == [0, -1]
        assert store.predictions(1).labels.tolist() == [1, 1]
        latest = store.latest_predictions()
        assert latest.iteration == 2
        np.testing.assert_allclose(latest.proba, [[0.9, 0.1], [0.2, 0.8]], rtol=1e-6)


def test_clear_loop_keeps_human_labels(store):
    store.set_seed_labels({0: 1})
    store.put_annotations([AnnotationRow(1, 0, "molam", 1), AnnotationRow(2, 2, "molam", 1)])
    store.add_override(2, 1)
    store.mark_overrides_applied(1)
    store.put_iteration(IterationRecord(1, "trained"))
    store.put_predictions(1, np.eye(3)[[0, 1, 2, 0]])
    store.put_training_set(1, _training_set())
    store.put_annotator_fit_labels([1, -1, -1, -1])
    store.clear_loop()
    assert store.labeled_indices().tolist() == [0, 2]
    assert store.iterations() == [] and store.predictions(1) is None and store.latest_predictions() is None
    assert store.training_set(1) is None and store.annotator_fit_labels() is None
    assert store.overrides(pending_only=True)[0].text_index == 2


def test_bad_input_errors(store, tmp_path):
    with pytest.raises(StoreError, match="outside the label set"):
        store.set_seed_labels({0: 3})
    with pytest.raises(StoreError, match="text index 9"):
        store.add_override(9, 0)
    with pytest.raises(StoreError, match="unique"):
        store.add_texts(["again"], text_ids=["a"])
    with pytest.raises(StoreError, match="unknown split"):
        store.set_splits({0: "train"})
    with pytest.raises(StoreError, match="gold has 1 entries for 2 texts"):
        store.add_texts(["x", "y"], gold=[1])
    store.set_seed_labels({0: 1})
    with pytest.raises(StoreError, match="new project"):
        store.set_labels(["x", "y"])
    with pytest.raises(StoreError, match="no project file"):
        ProjectStore.open(tmp_path / "missing.mollia.sqlite")
    junk = tmp_path / "junk.mollia.sqlite"
    junk.write_bytes(b"not a database" * 100)
    with pytest.raises(StoreError, match="not a MoLLIA project file"):
        ProjectStore(junk)


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "new.mollia.sqlite"
    ProjectStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION + 1),))
    with pytest.raises(StoreError, match="newer MoLLIA"):
        ProjectStore(path)


def test_list_projects(tmp_path):
    for name in ("one", "two"):
        ProjectStore(tmp_path / f"{name}.mollia.sqlite").close()
    (tmp_path / "notes.txt").write_text("x")
    assert sorted(p.name for p in list_projects(tmp_path)) == ["one.mollia.sqlite", "two.mollia.sqlite"]


def _limit_file_to_current_size(store, extra_pages: int = 0) -> None:
    """Simulate a full disk: SQLite may not grow the file past its current size (per connection)."""
    with store.transaction() as conn:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count={pages + extra_pages}")


def test_a_full_disk_is_a_plain_store_error_and_loses_nothing(store, tmp_path):
    path = tmp_path / "p.mollia.sqlite"
    store.set_seed_labels({0: 1, 1: 0})
    store.put_iteration(IterationRecord(0, "trained", metrics={"accuracy": 0.5}))
    _limit_file_to_current_size(store)
    expected = (
        f"The disk holding the project {path} is full: free some space and retry. "
        "Nothing already stored was lost."
    )
    with pytest.raises(StoreError) as caught:
        store.put_blob("model/molam", b"\x01" * 500_000)
    assert str(caught.value) == expected
    with pytest.raises(StoreError) as caught:  # a grouped write is undone as a whole
        with store.transaction():
            store.add_override(2, 2)
            store.put_predictions(1, np.ones((4, 50_000)))
    assert str(caught.value) == expected
    assert store.overrides() == [] and store.latest_predictions() is None
    assert store.seed_labels() == {0: 1, 1: 0}
    assert store.iteration(0).metrics == {"accuracy": 0.5}
    assert store.get_blob("model/molam") is None

    _limit_file_to_current_size(store, extra_pages=1_000_000)  # space freed: the same store carries on
    store.put_blob("model/molam", b"\x01" * 500_000)
    store.add_override(2, 2)
    store.close()
    with ProjectStore.open(path) as reopened:  # and the file resumes with everything committed
        assert reopened.seed_labels() == {0: 1, 1: 0}
        assert reopened.get_blob("model/molam")[0] == b"\x01" * 500_000
        assert [o.text_index for o in reopened.overrides()] == [2]
        assert reopened.texts() == ["good", "bad", "meh", "great"]


def test_a_disk_io_error_during_a_write_is_a_plain_store_error(store, tmp_path):
    store.set_seed_labels({0: 1})
    with pytest.raises(StoreError) as caught:
        with store.transaction() as conn:
            conn.execute("DELETE FROM responses")
            raise sqlite3.OperationalError("disk I/O error")  # what sqlite3 raises when the device fails
    path = tmp_path / "p.mollia.sqlite"
    assert str(caught.value).startswith(f"The disk holding the project {path} could not be written (disk I/O error")
    assert "check it and retry. Nothing already stored was lost." in str(caught.value)
    assert store.seed_labels() == {0: 1}
    with pytest.raises(sqlite3.OperationalError, match="no such table"):  # other errors are not disguised
        with store.transaction() as conn:
            conn.execute("DELETE FROM nowhere")
    store.set_seed_labels({1: 0})
    assert store.seed_labels() == {0: 1, 1: 0}


#: Schema 1 as MoLLIA wrote it (the tables the migration reads), verbatim.
_VERSION_1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE texts (
    idx INTEGER PRIMARY KEY,
    text_id TEXT NOT NULL UNIQUE,
    text TEXT NOT NULL,
    gold INTEGER,
    split TEXT NOT NULL DEFAULT 'pool' CHECK (split IN ('pool', 'validation', 'test')),
    columns TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE annotations (
    idx INTEGER PRIMARY KEY REFERENCES texts(idx) ON DELETE CASCADE,
    label INTEGER NOT NULL,
    source TEXT NOT NULL,
    iteration INTEGER NOT NULL,
    probability REAL,
    annotator_label INTEGER,
    negatives TEXT NOT NULL DEFAULT '[]',
    proba TEXT,
    d_anno INTEGER,
    weight REAL NOT NULL DEFAULT 1.0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE iterations (
    iteration INTEGER PRIMARY KEY,
    status TEXT NOT NULL CHECK (status IN ('queried', 'labeled', 'trained')),
    queried TEXT NOT NULL DEFAULT '[]',
    lambda REAL,
    metrics TEXT NOT NULL DEFAULT '{}',
    timings TEXT NOT NULL DEFAULT '{}',
    info TEXT NOT NULL DEFAULT '{}',
    started_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE overrides (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    idx INTEGER NOT NULL REFERENCES texts(idx) ON DELETE CASCADE,
    old_label INTEGER,
    new_label INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    applied_iteration INTEGER
);
CREATE INDEX annotations_iteration ON annotations(iteration);
CREATE INDEX overrides_idx ON overrides(idx);
"""


def _version_1_file(path):
    """A schema-1 project: seed 0; MoLAM labeled 1 and 2; a human overrode 2 (MoLAM said 'neg'), labeled
    the unqueried text 3, and overrode the seed 4."""
    t = "2026-01-01T00:00:00.000000+00:00"
    with sqlite3.connect(path) as conn:
        conn.executescript(_VERSION_1_SCHEMA)
        conn.executemany("INSERT INTO meta VALUES (?, ?)", [("schema_version", "1"), ("created_at", f'"{t}"')])
        conn.executemany("INSERT INTO settings VALUES (?, ?)", [("labels", '["neg", "pos", "neutral"]'),
                                                                ("loop_annotator", '"molam"')])
        conn.executemany("INSERT INTO texts(idx, text_id, text) VALUES (?, ?, ?)",
                         [(i, f"t{i}", f"text {i}") for i in range(6)])
        conn.executemany(
            "INSERT INTO annotations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(0, 1, "seed", 0, None, None, "[]", None, None, 1.0, t, t),
             (1, 2, "molam", 1, 0.7, 2, "[0]", "[0.1, 0.2, 0.7]", 1, 0.5, t, t),
             (2, 1, "override", 1, 0.6, 0, "[]", "[0.6, 0.3, 0.1]", 0, 1.0, t, t),
             (3, 0, "override", 1, None, None, "[]", None, None, 1.0, t, t),
             (4, 2, "override", 0, None, None, "[]", None, None, 1.0, t, t)],
        )
        conn.executemany("INSERT INTO overrides(idx, old_label, new_label, created_at, applied_iteration) "
                         "VALUES (?, ?, ?, ?, ?)", [(2, 0, 1, t, 2), (3, None, 0, t, None), (4, 1, 2, t, 2)])
        conn.execute("INSERT INTO iterations VALUES (1, 'trained', '[1, 2]', 0.4, '{}', '{}', '{}', ?, ?)", (t, t))


def test_a_version_1_file_is_migrated_on_open_keeping_every_label(tmp_path):
    path = tmp_path / "v1.mollia.sqlite"
    _version_1_file(path)
    with ProjectStore.open(path) as store:
        rows = {r.text_index: r for r in store.annotations()}
        assert {i: (r.label, r.source) for i, r in rows.items()} == {
            0: (1, "seed"), 1: (2, "molam"), 2: (1, "override"), 3: (0, "override"), 4: (2, "override")}
        assert (rows[1].probability, rows[1].negatives, rows[1].proba, rows[1].d_anno, rows[1].weight) == (
            0.7, (0,), (0.1, 0.2, 0.7), True, 0.5)
        assert (rows[2].annotator_label, rows[2].probability, rows[2].d_anno, rows[2].is_human) == (0, 0.6, False, True)
        assert rows[3].annotator_label is None and store.n_labeled == 5
        assert store.seed_labels() == {0: 1} and store.human_labels() == {0: 1, 2: 1, 3: 0, 4: 2}
        assert [(r.text_index, r.kind, r.label, r.previous_label, r.applied_iteration) for r in store.responses()] == [
            (2, "override", 1, 0, 2), (3, "override", 0, None, None), (4, "override", 2, 1, 2)]
        assert [r.text_index for r in store.responses(pending_only=True)] == [3]
        assert store.iteration(1).queried == (1, 2)
    with sqlite3.connect(path) as conn:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
    assert SCHEMA_VERSION == 2 and {"suggestions", "responses"} <= tables and not {"annotations", "overrides"} & tables
    with ProjectStore.open(path) as store:  # opened again: nothing migrated twice
        assert len(store.responses()) == 3 and store.seed_labels() == {0: 1}
        store.undo_response(2)  # back to MoLAM's label, kept as its suggestion
        store.undo_response(4)  # back to the seed
        store.undo_response(3)  # out of L
        assert {r.text_index: (r.label, r.source) for r in store.annotations()} == {
            0: (1, "seed"), 1: (2, "molam"), 2: (0, "molam"), 4: (1, "seed")}


def test_a_failed_migration_leaves_the_version_1_file_as_it_was(tmp_path, monkeypatch):
    path = tmp_path / "v1.mollia.sqlite"
    _version_1_file(path)
    import mollia_core.store as store_module

    def killed(conn):
        conn.execute("DROP TABLE overrides")
        raise RuntimeError("killed halfway")

    monkeypatch.setattr(store_module, "_migrate_from_version_1", killed)
    with pytest.raises(RuntimeError):
        ProjectStore.open(path)
    monkeypatch.undo()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM overrides").fetchone()[0] == 3
        assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == "1"
    with ProjectStore.open(path) as store:
        assert store.human_labels() == {0: 1, 2: 1, 3: 0, 4: 2}
