"""Daedalus: a point-in-time-correct feature platform (YAML feature views → training datasets)."""

__version__ = "0.1.0"
