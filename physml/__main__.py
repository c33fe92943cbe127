"""``python -m physml``: the ``physml`` command, for environments without its script on PATH."""
import sys

from physml.cli import main

sys.exit(main())
