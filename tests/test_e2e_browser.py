"""End to end in a real headless Chromium (Debian's ``chromium``) driven by Playwright, against
``streamlit run app.py`` started here on loopback.

The walk-through uploads a CSV, takes seeds, annotates with replayed real LLM evidence (the paper's
five LLMs on TREC), fits MoLAM, runs two iterations, overrides a flagged label and exports CSV. A
second walk loads a table whose ids, texts, labels, column and model names are Markdown / HTML
injections and checks every page shows them as text. Every request the pages make is recorded:
anything not addressed to 127.0.0.1 fails the test (and is aborted, so nothing leaves the machine).

Screenshots of every page go to a temporary folder; ``python scripts/screenshots.py`` (which sets
``MOLLIA_SCREENSHOTS_DIR``) writes them to ``assets/`` for the README.
"""

from __future__ import annotations

import dataclasses
import re
import urllib.parse
from pathlib import Path

import pandas as pd
import pytest

from mollia_core.evidence.replay import write_evidence_jsonl
from mollia_core.export import import_labeled
from mollia_core.project import Project
from project_helpers import INJECTIONS, REMOTE, trec_frame, trec_records, write_trec_files
from browser_helpers import (
    LONG, choose, go, projects_dir, read, run_recorded, screenshots_dir, set_number, settle, shot, show_all_labeled_texts,
    wait_for, wait_for_charts,
)
from browser_helpers import browser, recorded, server  # noqa: F401 (fixtures)

pytestmark = pytest.mark.e2e

N_TEXTS, BATCH, SEEDS = 300, 20, 50
INJECTED_LABEL_COLUMN = f"category ![c](http://{REMOTE}/c.png) **col**"
INJECTED_MODELS = {"gemma": f'<a href="http://{REMOTE}/m">gemma</a>', "llama": "**llama** :red[y]",
                   "mistral": f"![m](http://{REMOTE}/m.png) mistral"}


def test_from_csv_to_exported_labels_in_a_real_browser(server, recorded, trec, tmp_path):
    run_recorded(recorded, tmp_path, lambda page: _walk_through(page, server, trec, tmp_path))


def _walk_through(page, server, trec, tmp_path) -> None:
    shots = screenshots_dir(tmp_path)
    csv, evidence = write_trec_files(trec, tmp_path, n=N_TEXTS)
    page.goto(server)

    # A new project.
    page.get_by_label("New project").fill("trec-questions")
    page.get_by_role("button", name="Create project").click()
    page.get_by_text("Open: trec-questions").wait_for()

    # 1 Data: upload, columns (id, text, label are recognised), seeds from the label column.
    page.locator("input[type=file]").set_input_files(str(csv))
    page.get_by_role("button", name="Use this data").click()
    wait_for(page, page.get_by_role("heading", name="Seed labels"))
    page.get_by_role("button", name=f"Take {SEEDS} seeds from column 'label'").click()
    page.get_by_text(f"{SEEDS} seed labels").wait_for()
    shot(page, shots, "1-data")

    # 2 Annotators: replay the five LLMs' real evidence.
    go(page, "Annotators")
    page.get_by_text("Replay an evidence file (no LLM needed)").click()
    page.locator("input[type=file]").set_input_files(str(evidence))
    page.get_by_role("button", name="Import evidence").click()
    wait_for(page, page.get_by_role("heading", name="Each LLM on the seed labels"))
    shot(page, shots, "2-annotators")

    # 3 MoLAM.
    go(page, "MoLAM")
    page.get_by_role("button", name="Fit MoLAM").click()
    wait_for(page, page.get_by_role("heading", name="Accuracy on the seeds (cross-validated)"), LONG)
    shot(page, shots, "3-molam")

    # 4 Active learning: batch of 20, two iterations.
    go(page, "Active learning")
    set_number(page, "Batch size B", BATCH)
    set_number(page, "Iterations to run now", 2)
    page.get_by_role("button", name="Run 2 more iterations").click()
    wait_for(page, page.get_by_text("iterations done: 2"), LONG)
    shot(page, shots, "4-active-learning")

    # 5 Review: the flagged texts; override the first one's label in one click.
    go(page, "Review")
    show_all_labeled_texts(page)
    choose(page, "Flag (d_anno)", "flagged")
    flagged_id = choose(page, "Text to inspect (or select a row above)")
    wait_for(page, page.get_by_role("heading", name="What each LLM said"))
    page.get_by_role("heading", name=f"Text {flagged_id}").wait_for()
    current = page.get_by_test_id("stMetric").first.get_by_test_id("stMetricValue").inner_text().strip()
    labels = list(trec.labels)
    new_label = next(label for label in labels if label != current)
    # The button's accessible name ends with its keyboard shortcut: "3 · entity 3".
    page.get_by_role("button", name=f"{labels.index(new_label) + 1} · {new_label}").click()
    page.get_by_text("Overrides of this text").wait_for()
    shot(page, shots, "5-review")

    # 6 Export: CSV.
    go(page, "Export")
    with page.expect_download() as download:
        page.get_by_role("button", name="Download CSV").click()
    exported = tmp_path / "export.csv"
    download.value.save_as(exported)
    shot(page, shots, "6-export")

    frame = import_labeled(exported)
    assert len(frame) == SEEDS + 2 * BATCH
    assert frame["id"].is_unique
    assert set(frame["label"]) <= set(labels)
    counts = frame["source"].value_counts().to_dict()
    assert counts == {"seed": SEEDS, "molam": 2 * BATCH - 1, "override": 1}
    overridden = frame.set_index("id").loc[flagged_id]
    assert overridden["source"] == "override" and overridden["label"] == new_label
    assert overridden["flag"]
    molam = frame[frame["source"] == "molam"]
    assert molam["molam_probability"].between(0, 1).all()
    assert set(molam["iteration"]) == {1, 2}
    # The user's own column travels with each text.
    assert frame["note"].str.startswith("nöte").all()


# ------------------------------------------------------------------------ user data stays text


def _injected_files(trec, folder: Path, n: int) -> tuple[Path, Path, Path, list[str]]:
    """TREC questions whose ids, texts, labels, label column and model names are injections: the CSV,
    the same CSV with its first row repeated (a duplicate id), the matching evidence file, the ids."""
    frame = trec_frame(trec, n)
    renamed = dict(zip(trec.labels, INJECTIONS))
    ids = [f"{INJECTIONS[i % len(INJECTIONS)]} {qid}" for i, qid in enumerate(frame["qid"])]
    table = pd.DataFrame({
        "id": ids,
        "text": [f"{question} {INJECTIONS[i % len(INJECTIONS)]}" for i, question in enumerate(frame["question"])],
        INJECTED_LABEL_COLUMN: frame["category"].map(renamed),
    })
    csv, duplicated = folder / "injected.csv", folder / "duplicated.csv"
    table.to_csv(csv, index=False)
    pd.concat([table, table.iloc[[0]]]).to_csv(duplicated, index=False)
    id_of = dict(zip(frame["qid"], ids))
    records = [
        dataclasses.replace(record, text_id=id_of[record.text_id], model=INJECTED_MODELS[record.model],
                            labels=tuple(renamed[label] for label in record.labels))
        for records in trec_records(trec, n, models=len(INJECTED_MODELS)).values() for record in records
    ]
    evidence = write_evidence_jsonl(folder / "injected.evidence.jsonl", records)
    return csv, duplicated, evidence, ids


def _click_button(page, label: re.Pattern) -> None:
    """Click the first button whose label, as the user reads it, holds a match of ``label``."""
    buttons = page.get_by_role("button")
    for i in range(buttons.count()):
        if label.search(read(buttons.nth(i).inner_text())):
            buttons.nth(i).click()
            return
    pytest.fail(f"no button reads {label.pattern}")


def _assert_inert(page, *literal: str, charts: int = 0) -> None:
    """No link, image or bold text made from user data, and each ``literal`` string shown as it is
    (on the page or in its ``charts`` Plotly charts)."""
    settle(page)
    wait_for_charts(page, charts)
    made = page.evaluate(
        """(remote) => [...document.querySelectorAll('a, img, image, strong, b, iframe')].filter(e => {
            const ref = e.getAttribute('href') || e.getAttribute('src') || e.getAttribute('xlink:href') || '';
            return ref.includes(remote) || ref.trim().toLowerCase().startsWith('javascript:')
                || (['STRONG', 'B'].includes(e.tagName) && ['bold', 'col', 'llama'].includes(e.textContent));
        }).map(e => e.outerHTML.slice(0, 300))""",
        REMOTE,
    )
    assert made == [], f"user data became markup: {made}"
    shown = read(page.get_by_test_id("stMain").inner_text() + "".join(
        page.locator("[data-testid=stPlotlyChart]").all_text_contents()))
    missing = [text for text in literal if text not in shown]
    assert missing == [], f"not shown literally: {missing}"


def _use_table(page, csv: Path) -> None:
    """Upload ``csv``, take its labels from the injected label column, press "Use this data"."""
    page.locator("input[type=file]").set_input_files(str(csv))
    settle(page)
    choose(page, "Label column (optional)", INJECTED_LABEL_COLUMN)
    page.get_by_text("From the label column").click()
    settle(page)
    page.get_by_role("button", name="Use this data").click()


def test_user_data_is_shown_never_interpreted(server, recorded, trec, tmp_path):
    run_recorded(recorded, tmp_path, lambda page: _walk_injected(page, server, trec, tmp_path))


def _walk_injected(page, server, trec, tmp_path) -> None:
    csv, duplicated, evidence, ids = _injected_files(trec, tmp_path, n=150)
    page.goto(server)
    page.get_by_label("New project").fill("injected")
    page.get_by_role("button", name="Create project").click()
    page.get_by_text("Open: injected").wait_for()

    # Data: a duplicate id is named in the error as it is.
    _use_table(page, duplicated)
    error = page.get_by_test_id("stAlertContentError")
    error.wait_for()
    message = read(error.inner_text())
    assert "duplicate" in message and f"'{ids[0]}'" in message, message
    _assert_inert(page)

    _use_table(page, csv)
    wait_for(page, page.get_by_role("heading", name="Seed labels"))
    settle(page)
    main = read(page.get_by_test_id("stMain").inner_text())
    assert any(f"Text id {text_id}" in main for text_id in ids), "the hand-labeling caption names the text"
    _assert_inert(page, INJECTED_LABEL_COLUMN, *INJECTIONS)
    _click_button(page, re.compile(re.escape(f"Take {SEEDS} seeds from column '{INJECTED_LABEL_COLUMN}'")))
    page.get_by_text(f"{SEEDS} seed labels").wait_for()

    # Annotators: the replayed models' names and the prompt preview's caption.
    go(page, "Annotators")
    page.get_by_text("Replay an evidence file (no LLM needed)").click()
    page.locator("input[type=file]").set_input_files(str(evidence))
    page.get_by_role("button", name="Import evidence").click()
    wait_for(page, page.get_by_role("heading", name="Each LLM on the seed labels"))
    settle(page)
    main = read(page.get_by_test_id("stMain").inner_text())
    assert any(f"Preview on text {text_id}" in main for text_id in ids), "the preview caption names the text"
    _assert_inert(page, *(f"replay:{name}" for name in INJECTED_MODELS.values()))

    # MoLAM: the models on the accuracy chart, the labels in the histogram's legend.
    go(page, "MoLAM")
    page.get_by_role("button", name="Fit MoLAM").click()
    wait_for(page, page.get_by_role("heading", name="Accuracy on the seeds (cross-validated)"), LONG)
    _assert_inert(page, *INJECTED_MODELS.values(), INJECTIONS[4], INJECTIONS[5], charts=2)

    # Active learning: one iteration and its chart.
    go(page, "Active learning")
    set_number(page, "Batch size B", 10)
    page.get_by_role("button", name="Next iteration").click()
    wait_for(page, page.get_by_text("iterations done: 1"), LONG)
    _assert_inert(page)

    # Review: the value tiles, the evidence chart, an override to an injected label.
    go(page, "Review")
    wait_for(page, page.get_by_test_id("stProgress"), LONG)  # the review queue, first
    _assert_inert(page, charts=1)
    show_all_labeled_texts(page)
    choose(page, "Text to inspect (or select a row above)")
    wait_for(page, page.get_by_role("heading", name="What each LLM said"))
    tiles = [read(value).strip() for value in page.get_by_test_id("stMetricValue").all_inner_texts()[:4]]
    assert set(tiles) <= set(INJECTIONS), tiles
    _assert_inert(page, *INJECTIONS, *INJECTED_MODELS.values(), charts=1)
    new_label = next(label for label in INJECTIONS if label != tiles[0])
    _click_button(page, re.compile(rf"\d · {re.escape(new_label)}"))
    page.get_by_text("Overrides of this text").wait_for()
    assert read(page.get_by_test_id("stMetricValue").first.inner_text()).strip() == new_label
    _assert_inert(page, new_label)

    # Export.
    go(page, "Export")
    page.get_by_role("button", name="Download CSV").wait_for()
    _assert_inert(page)


# ------------------------------------------------------------------------ every way in runs the app shell

# Each page's title in the navigation and its URL path (Streamlit's: the file name without its number).
PAGES = {"Data": "data", "Annotators": "annotators", "MoLAM": "molam", "Active learning": "active_learning",
         "Review": "review", "Export": "export"}


def _assert_in_shell(page, title: str, project: str | None) -> None:
    """The page ``title`` is drawn inside the app shell: its page config, its navigation (not Streamlit's
    file-name one, which would list "app"), the project selector, and ``project`` open."""
    wait_for(page, page.get_by_role("heading", name=title, exact=True), LONG)
    sidebar = page.get_by_test_id("stSidebar")
    wait_for(page, sidebar.get_by_text(f"Open: {project}" if project else "No project open", exact=True))
    wait_for(page, sidebar.get_by_label("Open project"))
    settle(page)
    assert page.title() == "MoLLIA"
    navigation = page.get_by_test_id("stSidebarNav")
    assert navigation.get_by_text("app", exact=True).count() == 0
    # A link reads "<its icon's name>" and its title, on two lines.
    links = [link.strip().splitlines()[-1] for link in navigation.get_by_test_id("stSidebarNavLink").all_inner_texts()]
    assert links == list(PAGES), "the app's own navigation"
    assert page.get_by_test_id("stException").count() == 0


@pytest.mark.parametrize("path, title", [
    *((url_path, title) for title, url_path in PAGES.items()),
    # A file name is no page's URL: Streamlit says so and the shell shows the default page.
    ("3_molam", "Data"),
])
def test_a_deep_link_as_a_cold_servers_first_request_runs_inside_the_app(server, recorded, tmp_path, path, title):
    # Streamlit runs a pages/ file by itself on a cold server's first deep link (dashboard/shell.py).
    Project.create("opened-by-link", root=projects_dir(tmp_path))

    def walk(page) -> None:
        page.goto(f"{server}/{path}?project=opened-by-link")
        if path not in PAGES.values():
            dialog = page.get_by_role("dialog")
            dialog.get_by_text("Page not found").wait_for(timeout=LONG)
            page.keyboard.press("Escape")
            dialog.wait_for(state="hidden")
        _assert_in_shell(page, title, "opened-by-link")

    run_recorded(recorded, tmp_path, walk)


def test_the_open_project_survives_a_reload_and_travels_in_links(server, recorded, tmp_path):
    for name in ("alpha", "beta"):
        Project.create(name, root=projects_dir(tmp_path))

    def walk(page) -> None:
        page.goto(server)
        _assert_in_shell(page, "Data", None)
        choose(page, "Open project", "alpha")
        page.get_by_text("Open: alpha", exact=True).wait_for()
        assert urllib.parse.urlsplit(page.url).query == "project=alpha"

        page.reload()  # a new session, that knows only the URL
        _assert_in_shell(page, "Data", "alpha")
        go(page, "Review")  # every page keeps the project in its URL
        settle(page)
        assert page.url == f"{server}/review?project=alpha"

        page.goto(f"{server}/export?project=beta")  # a link to another page, another project
        _assert_in_shell(page, "Export", "beta")

        page.goto(f"{server}/molam?project=gone")
        _assert_in_shell(page, "MoLAM", None)
        warning = read(page.get_by_test_id("stAlertContentWarning").first.inner_text())
        assert "The link names the project 'gone', which is not in" in warning, warning
        assert "project=" not in page.url

    run_recorded(recorded, tmp_path, walk)
