"""Refresh the README's screenshots in ``assets/``: ``python scripts/screenshots.py``.

It runs the browser walk-through (tests/test_e2e_browser.py) with ``MOLLIA_SCREENSHOTS_DIR`` set to
``assets/``; a plain test run writes its screenshots to a temporary folder and leaves the tracked
files alone. Needs Debian's chromium and the paper's TREC evidence beside the repository, as the test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WALK_THROUGH = "tests/test_e2e_browser.py::test_from_csv_to_exported_labels_in_a_real_browser"


def main() -> int:
    env = dict(os.environ, MOLLIA_SCREENSHOTS_DIR=str(REPO / "assets"))
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", WALK_THROUGH],
                          cwd=REPO, env=env, check=False)
    if done.returncode == 0:
        print(f"screenshots written to {REPO / 'assets'}")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
