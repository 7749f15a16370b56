"""The Review page's keyboard flow in a real headless Chromium against ``streamlit run app.py``: the
review queue of a project with seeds, the paper's real LLM evidence on TREC, a fitted MoLAM and one
active-learning iteration. "a" accepts and moves on, a number key overrides, "u" undoes, j/k and the
arrows move; each is checked in the project file, and a reload comes back to the same text."""

from __future__ import annotations

import re

import pytest

from mollia_core.loop import LoopConfig
from mollia_core.project import AnnotatorSettings, AnnotatorSpec, Project
from project_helpers import trec_frame, trec_records
from browser_helpers import LONG, projects_dir, read, run_recorded, settle, show_all_labeled_texts, wait_for
from browser_helpers import browser, recorded, server  # noqa: F401 (fixtures)

pytestmark = pytest.mark.e2e

N, BATCH, SEEDS = 150, 12, 40
NAME = "review-keys"
SCREENSHOT, SCREENSHOT_TABLE = "/tmp/h3_review.png", "/tmp/h3_review_table.png"
POSITION = re.compile(r"Text (\d+) of (\d+) · id (\S+)")


def _iterated_project(trec, root) -> Project:
    project = Project.create(NAME, root=root)
    project.set_dataset(trec_frame(trec, N), "question", id_column="qid", label_column="category")
    for model, records in trec_records(trec, N, models=3).items():
        spec = AnnotatorSpec(kind="replay", model=model, path="trec.jsonl")
        project.set_panel(project.panel() + [spec])
        project.import_evidence_records(spec, records)
    project.take_seeds_from_column(SEEDS)
    project.fit_annotator(AnnotatorSettings(), cv=False)
    project.run_iterations(1, LoopConfig(batch_size=BATCH))
    return project


def _position(page) -> tuple[int, int, str]:
    """The queue's place as the page shows it: (position, length, text id)."""
    shown = read(page.get_by_test_id("stProgress").inner_text())
    match = POSITION.search(shown)
    assert match, shown
    return int(match[1]), int(match[2]), match[3]


def _molam_label(page) -> str:
    """The label MoLAM gave the text shown (the first value tile)."""
    return read(page.get_by_test_id("stMetricValue").first.inner_text()).strip()


def _press(page, key: str, moved_from: tuple[int, int, str] | None = None) -> tuple[int, int, str]:
    """Press ``key`` (the page, not an input, has the focus) and wait for the rerun; the new place."""
    page.keyboard.press(key)
    settle(page)
    if moved_from is not None:
        for _ in range(40):
            if _position(page) != moved_from:
                break
            page.wait_for_timeout(250)
    return _position(page)


def _responses(root) -> list[tuple[str, str, str]]:
    """(text id, kind, label) of every stored review, read from the project file."""
    project = Project.open(NAME, root=root)
    try:
        return [(project.text_ids[r.text_index], r.kind, project.labels[r.label]) for r in project.store.responses()]
    finally:
        project.store.close()


def test_review_queue_by_keyboard_and_a_reload(server, recorded, trec, tmp_path):
    root = projects_dir(tmp_path)
    project = _iterated_project(trec, root)
    labels = project.labels
    queue_length = len(project.queue.ranked(project.queue.budget()))
    project.store.close()
    assert queue_length >= 4

    def walk(page) -> None:
        page.goto(f"{server}/review?project={NAME}")
        wait_for(page, page.get_by_test_id("stProgress"), LONG)
        settle(page)
        first = _position(page)
        assert first[:2] == (1, queue_length)
        page.get_by_text("Keys:").wait_for()

        # a: MoLAM's label becomes a human label; the next text takes the first place.
        accepted = _molam_label(page)
        after_accept = _press(page, "a", moved_from=first)
        assert after_accept[:2] == (1, queue_length - 1) and after_accept[2] != first[2]
        assert _responses(root) == [(first[2], "accept", accepted)]

        # j / → move on, k / ← move back.
        second = _press(page, "j", moved_from=after_accept)
        assert second[0] == 2
        assert _press(page, "k", moved_from=second) == after_accept
        assert _press(page, "ArrowRight", moved_from=after_accept) == second
        assert _press(page, "ArrowLeft", moved_from=second) == after_accept

        # A number key sets that label (one MoLAM did not give) and moves on.
        molam = _molam_label(page)
        number = next(k for k, label in enumerate(labels[:9]) if label != molam) + 1
        after_override = _press(page, str(number), moved_from=after_accept)
        assert after_override[2] != after_accept[2] and after_override[1] == queue_length - 2
        assert _responses(root)[-1] == (after_accept[2], "override", labels[number - 1])

        # u: the override is withdrawn and the page goes back to its text.
        assert _press(page, "u", moved_from=after_override)[2] == after_accept[2]
        assert _responses(root) == [(first[2], "accept", accepted)]
        assert _molam_label(page) == molam  # back to MoLAM's suggestion
        page.screenshot(path=SCREENSHOT, full_page=True)

        # A reload (a new session that knows only the URL) keeps the project open and the same text.
        shown = _position(page)
        page.reload()
        wait_for(page, page.get_by_test_id("stProgress"), LONG)
        settle(page)
        page.get_by_test_id("stSidebar").get_by_text(f"Open: {NAME}", exact=True).wait_for()
        assert _position(page) == shown
        assert f"project={NAME}" in page.url

        # Every labeled text: the shown MoLAM labels accepted at once, after a confirmation.
        show_all_labeled_texts(page)
        waiting = BATCH - 1  # all but the one accepted above
        page.get_by_role("button", name=f"Accept all {waiting} shown").click()
        page.get_by_role("button", name=f"Yes, accept {waiting} labels").click()
        wait_for(page, page.get_by_text(f"Accepted {waiting} MoLAM labels as human labels."))
        assert [kind for _, kind, _ in _responses(root)] == ["accept"] * (waiting + 1)
        settle(page)
        page.screenshot(path=SCREENSHOT_TABLE, full_page=True)

    run_recorded(recorded, tmp_path, walk)
