"""Seconds per action of the Data page on a large project: one rerun of the page, and labeling one
seed by key (the label button's shortcut: ``label_seed`` and the rerun it triggers), through the
real app (streamlit's AppTest, the Project cached across reruns as the server caches it).

The project is generated: ``--rows`` short texts (default 200,000) in a CSV under a temporary
folder, no label column (seeds are labeled by hand, as a user without labels does). Nothing is
written into the repository or the user's home (MOLLIA_HOME is a temporary folder).

    nice python benchmarks/data_page_speed.py --rows 200000 --repeats 5
    # the code before a change, from an exported copy of it:
    git archive HEAD | tar -x -C /tmp/mollia-head && nice python benchmarks/data_page_speed.py --code /tmp/mollia-head
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=5, help="timed reruns and timed seed labels")
    parser.add_argument("--seeds", type=int, default=20, help="seeds labeled before the timed ones")
    parser.add_argument("--code", default=str(Path(__file__).resolve().parent.parent),
                        help="the checkout whose app and mollia_core are timed (default: this one)")
    args = parser.parse_args()

    code = Path(args.code).resolve()
    folder = Path(tempfile.mkdtemp(prefix="mollia-data-speed-"))
    os.environ["MOLLIA_HOME"] = str(folder / "home")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(code))
    os.chdir(code)

    import pandas as pd
    from streamlit.testing.v1 import AppTest

    from mollia_core.project import Project

    words = ["market", "match", "vote", "film", "phone", "goal", "budget", "court", "album", "chip"]
    texts = [f"text {i}: {words[i % 10]} {words[(i * 7) % 10]} news of day {i % 365}" for i in range(args.rows)]
    csv = folder / "big.csv"
    pd.DataFrame({"id": [f"t{i}" for i in range(args.rows)], "text": texts}).to_csv(csv, index=False)
    started = time.perf_counter()
    project = Project.create("big")
    project.set_dataset(pd.read_csv(csv, dtype=str), "text", id_column="id", labels=["a", "b", "c"],
                        source_name=csv.name)
    for text_id in project.seed_candidates(args.seeds):
        project.label_seed(text_id, "a")
    project.store.close()
    print(f"code: {code}\nproject: {args.rows} rows, {args.seeds} seeds, built in {time.perf_counter() - started:.1f} s")

    at = AppTest.from_file(str(code / "app.py"), default_timeout=600)
    at.session_state["project_name"] = "big"
    at.switch_page("pages/1_data.py")
    started = time.perf_counter()
    at.run()
    print(f"first run (opens the project): {time.perf_counter() - started:.2f} s")
    assert not at.exception, [e.value for e in at.exception]

    reruns, labels = [], []
    for _ in range(args.repeats):
        started = time.perf_counter()
        at.run()
        reruns.append(time.perf_counter() - started)
    for _ in range(args.repeats):
        button = next(b for b in at.button if b.key and b.key.startswith("seed_") and b.key.endswith("_0"))
        started = time.perf_counter()
        button.click().run()  # label_seed, then the page's st.rerun
        labels.append(time.perf_counter() - started)
        assert not at.exception, [e.value for e in at.exception]
    seeds = sum("seed labels" in m.value and f"**{args.seeds + args.repeats}**" in m.value for m in at.markdown)
    assert seeds, "the labeled seeds are not on the page"

    def shown(values: list[float]) -> str:
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):.3f} ± {spread:.3f} s"

    print(f"Data page rerun: {shown(reruns)} (n={len(reruns)})")
    print(f"label one seed by key (label_seed + rerun): {shown(labels)} (n={len(labels)})")


if __name__ == "__main__":
    main()
