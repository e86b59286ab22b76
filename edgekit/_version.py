"""edgekit's version, in a module of its own so that every layer can read it without importing the package
facade (``edgekit/__init__.py`` sits on top of every layer: it re-exports the public API)."""

__version__ = "0.1.0"
