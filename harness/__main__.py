"""python -m harness: the attnbench command, runnable from the repository root
with no install (as on a GPU machine whose Python already has the frameworks)."""
import sys

from harness.cli import main

sys.exit(main())
