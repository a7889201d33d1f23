"""``python -m gizdev``: the same as the ``gizdev`` command."""

import sys

from gizdev.cli.main import main

sys.exit(main())
