"""Helpers of the Streamlit demo (``demos/streamlit_app.py``).

- :mod:`ui.core`: the data directory, the cached :class:`~personalize.Personalizer`,
  loading the sample users on first open, refresh with progress, forget with proof,
  and the answer model configured in the sidebar.
- :mod:`ui.ingest`: uploads and pasted chats → ingestion, one result per file.
- :mod:`ui.render`: Markdown-safe rendering of persona facts, summaries, memory
  and the packed context with provenance highlighting.

They import as ``ui`` because the app puts ``demos/`` first on ``sys.path``
(``streamlit run`` does that too).
"""
