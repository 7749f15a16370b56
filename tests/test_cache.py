"""The evidence cache and CachedSource: rerun from cache, resume after cancel or kill, cache keys.

The wrapped source is a counting wrapper around real replayed TREC evidence (a unit test of
the cache logic: what matters is which texts reach the wrapped source)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from mollia_core.evidence import Cancelled, EvidenceError, EvidenceSource, replay_panel
from mollia_core.evidence.cache import CachedSource, EvidenceCache, default_cache_path
from mollia_core.evidence.record import EvidenceRecord
from mollia_core.paths import REPO_ROOT


class Counting(EvidenceSource):
    """Delegates to a real source and records every text it is asked about."""

    def __init__(self, inner: EvidenceSource, key_extra: str = "", cancel_after: int | None = None,
                 cancel: threading.Event | None = None) -> None:
        self.inner = inner
        self.name = inner.name
        self.key_extra = key_extra
        self.asked: list[str] = []
        self.cancel_after = cancel_after
        self.cancel = cancel

    @property
    def cache_key(self) -> str:
        return self.inner.cache_key + self.key_extra

    def evidence(self, texts, labels, *, text_ids=None, progress=None, cancel=None):
        self.asked.extend(texts)
        records = self.inner.evidence(texts, labels, text_ids=text_ids)
        if self.cancel_after is not None and len(self.asked) >= self.cancel_after:
            self.cancel.set()  # the user presses "cancel" while this chunk runs
        return records


@pytest.fixture(scope="module")
def yi(trec):
    return replay_panel(trec)[4]


@pytest.fixture
def cache(tmp_path):
    return EvidenceCache(tmp_path / "cache.sqlite")


def _texts(trec, n=40, offset=0):
    # distinct questions only, so counts are exact
    seen, out = set(), []
    for t in trec.texts[offset:]:
        if t not in seen:
            seen.add(t)
            out.append(t)
        if len(out) == n:
            break
    return out


def test_rerun_is_served_from_the_cache(trec, yi, cache):
    texts = _texts(trec)
    ids = [f"row{i}" for i in range(len(texts))]
    counting = Counting(yi)
    source = CachedSource(counting, cache, chunk_size=7)
    assert source.name == "yi" and source.cache_key == yi.cache_key
    first = source.evidence(texts, trec.labels, text_ids=ids)
    assert counting.asked == texts
    seen = []
    second = CachedSource(counting, EvidenceCache(cache.path), chunk_size=7).evidence(
        texts, trec.labels, text_ids=ids, progress=seen.append
    )
    assert counting.asked == texts  # nothing new was asked
    assert [(p.done, p.total) for p in seen] == [(40, 40)]
    direct = yi.evidence(texts, trec.labels)
    for a, b, c in zip(first, second, direct):
        assert a.text_id == b.text_id
        np.testing.assert_array_equal(b.label_probs, c.label_probs)
        np.testing.assert_array_equal(b.vote_shares, c.vote_shares)
        assert b.answers == c.answers and b.no_label_share == c.no_label_share
    assert cache.count(yi.cache_key) == 40


def test_only_missing_texts_are_computed_and_ids_follow_the_caller(trec, yi, cache):
    texts = _texts(trec, 30)
    counting = Counting(yi)
    source = CachedSource(counting, cache, chunk_size=4)
    source.evidence(texts[:10], trec.labels)
    counting.asked.clear()
    seen = []
    out = source.evidence(texts, trec.labels, text_ids=[f"x{i}" for i in range(30)], progress=seen.append)
    assert counting.asked == texts[10:]
    assert seen[0].done == 10 and seen[-1].done == 30 and all(p.total == 30 for p in seen)
    assert [p.done for p in seen] == sorted(p.done for p in seen)
    assert [r.text_id for r in out] == [f"x{i}" for i in range(30)]


def test_repeated_texts_are_computed_once(trec, yi, cache):
    texts = _texts(trec, 3)
    counting = Counting(yi)
    out = CachedSource(counting, cache).evidence(texts + texts[:2], trec.labels)
    assert counting.asked == texts
    assert len(out) == 5
    np.testing.assert_array_equal(out[3].label_probs, out[0].label_probs)


def test_cancel_mid_run_saves_what_is_done_and_the_rerun_computes_the_rest(trec, yi, cache):
    texts = _texts(trec, 40)
    cancel = threading.Event()
    counting = Counting(yi, cancel_after=12, cancel=cancel)
    source = CachedSource(counting, cache, chunk_size=5)
    seen = []
    with pytest.raises(Cancelled):
        source.evidence(texts, trec.labels, progress=seen.append, cancel=cancel)
    assert counting.asked == texts[:15]  # the chunk running when cancel was pressed finished
    assert cache.count() == 15
    assert seen[-1].done == 15
    rerun = Counting(yi)
    out = CachedSource(rerun, cache, chunk_size=5).evidence(texts, trec.labels)
    assert rerun.asked == texts[15:]
    assert len(out) == 40 and cache.count() == 40


def test_cancel_set_before_start_computes_nothing(trec, yi, cache):
    cancel = threading.Event()
    cancel.set()
    counting = Counting(yi)
    with pytest.raises(Cancelled):
        CachedSource(counting, cache).evidence(_texts(trec, 3), trec.labels, cancel=cancel)
    assert counting.asked == []


def test_cache_key_changes_with_template_model_and_labels(trec, yi, cache):
    texts = _texts(trec, 5)
    base = Counting(yi, key_extra="|template=A")
    CachedSource(base, cache).evidence(texts, trec.labels)
    other_template = Counting(yi, key_extra="|template=B")
    CachedSource(other_template, cache).evidence(texts, trec.labels)
    assert other_template.asked == texts
    other_model = Counting(replay_panel(trec)[0], key_extra="|template=A")
    CachedSource(other_model, cache).evidence(texts, trec.labels)
    assert other_model.asked == texts
    reordered = tuple(reversed(trec.labels))
    same_source_new_labels = Counting(yi, key_extra="|template=A")
    out = CachedSource(same_source_new_labels, cache).evidence(texts, reordered)
    assert same_source_new_labels.asked == texts
    assert out[0].labels == reordered
    again = Counting(yi, key_extra="|template=A")
    CachedSource(again, cache).evidence(texts, trec.labels)
    assert again.asked == []
    assert cache.count() == 20


def test_a_source_returning_the_wrong_number_of_records_is_an_error(trec, yi, cache):
    class Short(Counting):
        def evidence(self, texts, labels, **kwargs):
            return super().evidence(texts, labels)[:-1]

    with pytest.raises(EvidenceError, match="returned 2 records for 3 texts"):
        CachedSource(Short(yi), cache, chunk_size=3).evidence(_texts(trec, 3), trec.labels)
    with pytest.raises(EvidenceError, match="one id per text"):
        CachedSource(Short(yi), cache).evidence(["a"], trec.labels, text_ids=["1", "2"])
    with pytest.raises(ValueError, match="chunk_size"):
        CachedSource(yi, cache, chunk_size=0)


def test_default_location_and_clear(mollia_home, trec, yi):
    cache = EvidenceCache()
    assert cache.path == default_cache_path() == mollia_home / "evidence-cache.sqlite"
    CachedSource(yi, cache).evidence(_texts(trec, 2), trec.labels)
    assert cache.count() == 2
    cache.clear(yi.cache_key)
    assert cache.count() == 0


def test_wal_mode_and_a_concurrent_reader(trec, yi, cache):
    texts = _texts(trec, 30)
    source = CachedSource(yi, cache, chunk_size=1)
    reader = sqlite3.connect(cache.path)
    assert reader.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    reader.execute("BEGIN")  # a reader holding a read transaction must not block the writer
    reader.execute("SELECT COUNT(*) FROM evidence").fetchone()
    counts = []
    thread = threading.Thread(target=lambda: counts.append(len(source.evidence(texts, trec.labels))))
    thread.start()
    thread.join(timeout=60)
    reader.rollback()
    assert counts == [30]
    assert reader.execute("SELECT COUNT(*) FROM evidence").fetchone()[0] == 30


def test_corrupt_cache_file_gets_a_clear_error(tmp_path):
    path = tmp_path / "bad.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(EvidenceError, match="delete the file"):
        EvidenceCache(path)


def test_a_killed_run_keeps_every_committed_text(tmp_path):
    """SIGKILL a process mid-run: every text finished before the kill is in the cache."""
    path = tmp_path / "cache.sqlite"
    script = textwrap.dedent(
        f"""
        import time
        import numpy as np
        from mollia_core.evidence import EvidenceRecord, EvidenceSource
        from mollia_core.evidence.cache import CachedSource, EvidenceCache

        class Slow(EvidenceSource):
            name = "slow"
            cache_key = "slow-v1"
            def evidence(self, texts, labels, *, text_ids=None, progress=None, cancel=None):
                time.sleep(0.05)
                return [EvidenceRecord(i, "slow", tuple(labels), np.array([1.0, 0.0]), np.array([1.0, 0.0]))
                        for i in text_ids]

        CachedSource(Slow(), EvidenceCache({str(path)!r}), chunk_size=1).evidence(
            [f"text {{i}}" for i in range(1000)], ["a", "b"])
        """
    )
    process = subprocess.Popen([sys.executable, "-c", script], cwd=REPO_ROOT)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            time.sleep(0.2)
            if path.exists():
                try:
                    if EvidenceCache(path).count("slow-v1") >= 5:
                        break
                except (sqlite3.OperationalError, EvidenceError):
                    continue
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    kept = EvidenceCache(path).count("slow-v1")
    assert 5 <= kept < 1000
    # resume: only the rest is computed
    asked = []

    class Rest(EvidenceSource):
        name = "slow"
        cache_key = "slow-v1"

        def evidence(self, texts, labels, *, text_ids=None, progress=None, cancel=None):
            asked.extend(texts)
            return [EvidenceRecord(i, "slow", tuple(labels), np.array([1.0, 0.0]), np.array([1.0, 0.0]))
                    for i in text_ids]

    CachedSource(Rest(), EvidenceCache(path), chunk_size=100).evidence([f"text {i}" for i in range(1000)], ["a", "b"])
    assert len(asked) == 1000 - kept
    assert asked[0] == f"text {kept}"


@pytest.mark.slow
def test_real_embedded_model_rerun_and_resume_through_the_cache(tmp_path, monkeypatch):
    """The smallest real embedded LLM behind the cache: cancel after the first chunk, resume
    with only the rest, then a rerun that never loads the model."""
    from mollia_core.evidence import embedded
    from mollia_core.evidence.embedded import EmbeddedSource

    monkeypatch.setenv("MOLLIA_HOME", str(tmp_path / "home"))
    labels = ["sport", "business", "politics"]
    texts = [
        "Arsenal beat Chelsea 2-0 in the Premier League",
        "Shares in Tesco fall after profit warning",
        "Prime minister calls snap general election",
        "Federer wins his eighth Wimbledon title",
    ]
    cache = EvidenceCache(tmp_path / "cache.sqlite")
    cancel = threading.Event()

    def press_cancel(p):
        if p.done >= 2:
            cancel.set()

    source = CachedSource(EmbeddedSource("smollm2-135m", n_samples=3, max_new_tokens=4), cache, chunk_size=2)
    try:
        with pytest.raises(Cancelled):
            source.evidence(texts, labels, progress=press_cancel, cancel=cancel)
        assert cache.count(source.cache_key) == 2
        first = source.evidence(texts, labels, text_ids=list("abcd"))
    finally:
        source.close()
    assert cache.count(source.cache_key) == 4
    monkeypatch.setattr(embedded, "prepare_embedded_model", lambda *a, **k: pytest.fail("model loaded on rerun"))
    again = CachedSource(EmbeddedSource("smollm2-135m", n_samples=3, max_new_tokens=4), cache).evidence(
        texts, labels, text_ids=list("abcd")
    )
    for a, b in zip(first, again):
        assert a.text_id == b.text_id and a.answers == b.answers and len(b.answers) == 3
        np.testing.assert_array_equal(a.label_probs, b.label_probs)
        np.testing.assert_array_equal(a.vote_shares, b.vote_shares)
        assert b.label_probs.sum() == pytest.approx(1.0, abs=1e-4)
    other_decoding = EmbeddedSource("smollm2-135m", n_samples=4, max_new_tokens=4)
    assert other_decoding.cache_key != source.cache_key
    assert CachedSource(other_decoding, cache).cached_count(texts, labels) == 0


def test_embedded_cache_key_changes_with_descriptions_demonstrations_and_surface_forms():
    from mollia_core.evidence.embedded import EmbeddedSource
    from mollia_core.evidence.prompt import PromptTemplate

    def key(**kwargs) -> str:
        return EmbeddedSource("smollm2-135m", **kwargs).cache_key

    base = key()
    described = key(template=PromptTemplate(descriptions={"ham": "an ordinary, legitimate email"}))
    keys = {
        base,
        described,
        key(template=PromptTemplate(descriptions={"ham": "a legitimate email"})),
        key(template=PromptTemplate(demonstrations=(("Meeting at 10", "ham"),))),
        key(surface_forms=False),
    }
    assert len(keys) == 5
    assert key(template=PromptTemplate(descriptions={"ham": "an ordinary, legitimate email"})) == described
