"""The dashboard's shared code: the app shell (``shell``) and what the pages share (``common``).

Not in ``pages/``: Streamlit treats every ``.py`` file there as a page.
"""

import os

# Every entry path imports this package first (app.py, and each page through its imports), so no model
# library is imported before it knows to stay offline.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
