"""Framework implementations of the spec. Importing this package imports no framework."""
from backends.base import BACKENDS, REGISTRY, load_backend

__all__ = ["BACKENDS", "REGISTRY", "load_backend"]
