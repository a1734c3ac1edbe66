"""The old name of harness.spec.reference, kept for users' imports: it is that module."""
import sys

from harness.spec import reference as _moved

sys.modules[__name__] = _moved
