"""The package version: one place, read by the package, its metadata and every artifact it writes."""

__version__ = "0.1.0"
