"""The entry points ``langgraph dev`` loads in this folder (see ``langgraph.json``).

- ``graph``: the demo app, compiled without a store: the server injects its own;
  the user of a run is the authenticated identity (``langgraph.json``'s
  ``"auth"``: the repository's auth module),
- ``store``: a ``PersonalizeStore``, which ``langgraph.json`` names as the
  server's store, so ``runtime.store`` in the app (and the server's /store API)
  reads the users' personal data.

Both are built at import: the server imports these files in a worker thread at
startup, where opening the data directory (and ingesting the sample users the
first time) may block; it must not happen inside a run. Both share one
``Personalizer`` (``open_sample_personalizer`` caches it per directory).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from app import default_app, sample_store  # noqa: E402

graph = default_app(store=None, served=True)
store = sample_store()
