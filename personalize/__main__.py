"""``python -m personalize``: the command line (same as the ``personalize`` command)."""

import sys

from personalize.cli import main

sys.exit(main())
