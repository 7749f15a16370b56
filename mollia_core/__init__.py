"""MoLLIA core: a mixture of local LLMs annotating inside an active-learning loop.

This package knows nothing of Streamlit. The moving parts, one module each:

- ``dataset``      validated text datasets (CSV / DataFrame)             -- issue 2
- ``evidence``     per-LLM evidence records and sources (Eq. 1-3)         -- issues 2, 3
- ``annotation``   MoLAM, MoL and the LLM baselines (Eq. 4-6)             -- issue 2
- ``losses``       robust AL loss: W_d * CE + lambda * L_neg (Eq. 7-9)    -- issue 2
- ``learner``      the AL model (fast head on frozen embeddings / fine-tune)
- ``query``        query strategies behind one interface (small-text style)
- ``loop``         Algorithm 1, resumable, persisted in ``store``
"""

__version__ = "0.1.0"
