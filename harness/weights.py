"""The old name of harness.spec.weights, kept for users' imports: it is that module."""
import sys

from harness.spec import weights as _moved

sys.modules[__name__] = _moved
