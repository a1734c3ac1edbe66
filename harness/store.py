"""The old name of harness.results.store, kept for users' imports: it is that module."""
import sys

from harness.results import store as _moved

sys.modules[__name__] = _moved
