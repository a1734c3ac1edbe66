"""Framework implementations of the spec. Importing this package imports no framework."""
from backends.base import load_backend

__all__ = ["BACKENDS", "REGISTRY", "load_backend"]


def __getattr__(name: str):
    if name in ("BACKENDS", "REGISTRY"):      # the catalogue's, read when asked for
        from harness.spec import catalog
        return getattr(catalog, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
