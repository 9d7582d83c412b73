"""The package version, importable from below the public face."""

__version__ = "0.1.0"
