"""The package version, in a module of its own so that anything may read it without
importing the package's public surface (and with it the whole service)."""

__all__ = ["__version__"]

__version__ = "0.1.0"
